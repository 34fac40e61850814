import { html } from 'htm/preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import UPlot from 'uplot'
import { call } from '../api.js'
import { ErrorLine } from '../ui.js'

// The overview polls GET /v1/admin/overview; rates are the change of its
// counters between two polls, kept for the last POINTS polls in the chart.
const POLL_MS = 2000
const POINTS = 90

function RateChart ({ series }) {
  const box = useRef(null)
  const plot = useRef(null)
  useEffect(() => {
    plot.current = new UPlot({
      width: 760,
      height: 220,
      // at least 30 s and at most the last POINTS polls, from 0 up: one point alone would stretch the axes to years
      scales: {
        x: { time: true, range: (_u, min, max) => [Math.min(max - 30, Math.max(min, max - (POINTS * POLL_MS) / 1000)), max] },
        y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [{}, { label: 'messages/s' }],
      series: [{}, { label: 'in', stroke: '#2563eb', width: 2 }, { label: 'out', stroke: '#16a34a', width: 2, dash: [6, 4] }],
    }, [[], [], []], box.current)
    return () => plot.current.destroy()
  }, [])
  useEffect(() => { plot.current?.setData(series) }, [series])
  return html`<div class="chart" ref=${box}></div>`
}

const sum = (record) => Object.values(record).reduce((a, b) => a + b, 0)
const perProvider = (record) => Object.entries(record).map(([provider, n]) => `${provider} ${n}`).join(', ') || '0'

function Tile ({ label, value, id }) {
  return html`<div class="tile"><span class="label">${label}</span><span class="value" id=${id}>${value}</span></div>`
}

export function OverviewPage () {
  const [overview, setOverview] = useState(null)
  const [error, setError] = useState(null)
  const [series, setSeries] = useState([[], [], []])
  const previous = useRef(null)
  useEffect(() => {
    let stopped = false
    const poll = async () => {
      try {
        const now = await call('GET', '/v1/admin/overview')
        if (stopped) return
        const at = Date.now() / 1000
        const before = previous.current
        if (before !== null) {
          const dt = Math.max(at - before.at, 0.001)
          const rateIn = Math.max(0, now.counters.messagesIn - before.data.counters.messagesIn) / dt
          const rateOut = Math.max(0, now.counters.messagesOut - before.data.counters.messagesOut) / dt
          setSeries(([x, a, b]) => [[...x, at].slice(-POINTS), [...a, rateIn].slice(-POINTS), [...b, rateOut].slice(-POINTS)])
        }
        previous.current = { at, data: now }
        setOverview(now)
        setError(null)
      } catch (err) {
        if (!stopped) setError(err)
      }
    }
    void poll()
    const timer = setInterval(poll, POLL_MS)
    return () => { stopped = true; clearInterval(timer) }
  }, [])

  const last = (i) => { const values = series[i]; return values.length === 0 ? '…' : values[values.length - 1].toFixed(1) }
  return html`<h1>Overview</h1>
    <${ErrorLine} error=${error} />
    ${overview === null
      ? html`<p>Loading…</p>`
      : html`<p class="meta">Herald ${overview.version}${overview.node === null ? '' : ` · node ${overview.node}`} · up ${overview.uptimeSec} s</p>
        <div class="tiles">
          <${Tile} id="ov-connected" label="Connected clients" value=${overview.clients.connected} />
          <${Tile} id="ov-rate-in" label="Messages in /s" value=${last(1)} />
          <${Tile} id="ov-rate-out" label="Messages out /s" value=${last(2)} />
          <${Tile} id="ov-queued-sessions" label="Sessions with a queue" value=${overview.queues.sessions} />
          <${Tile} id="ov-queued-messages" label="Queued messages" value=${overview.queues.messages} />
          <${Tile} id="ov-outbox" label="Relay outbox" value=${overview.relay.outbox} />
          <${Tile} id="ov-sent" label=${`Relay sent (${sum(overview.counters.relaySent)})`} value=${perProvider(overview.counters.relaySent)} />
          <${Tile} id="ov-failed" label=${`Relay failed (${sum(overview.counters.relayFailed)})`} value=${perProvider(overview.counters.relayFailed)} />
          <${Tile} id="ov-dead" label="Dead letters" value=${overview.relay.deadLetters} />
        </div>`}
    <h2>Messages per second (this node, polled every ${POLL_MS / 1000} s)</h2>
    <${RateChart} series=${series} />`
}

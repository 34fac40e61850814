import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call, enc } from '../api.js'
import { ConfirmButton, Done, ErrorLine, Json, useAction, useLoad, when } from '../ui.js'

// GET /v1/admin/dead-letters[/{id}], POST …/{id}/replay and …/replay, DELETE …/{id} and the collection.

function Inspect ({ id, onClose }) {
  const letter = useLoad(async () => await call('GET', `/v1/admin/dead-letters/${enc(id)}`), [id])
  return html`<section class="detail" id="dead-letter-detail">
    <h2>Dead letter <span class="mono">${id}</span> <button type="button" onClick=${onClose}>Close</button></h2>
    <${ErrorLine} error=${letter.error} />
    ${letter.data !== undefined && html`<dl>
        <dt>Provider's reason</dt><dd id="dead-letter-reason">${letter.data.reason}</dd>
        <dt>Installation</dt><dd class="mono">${letter.data.installationId}</dd>
        <dt>Topic</dt><dd class="mono">${letter.data.topic}</dd>
        <dt>Attempts</dt><dd>${letter.data.attempts}</dd>
        <dt>Expires</dt><dd>${when(letter.data.expiresAt)}</dd>
      </dl>
      <h3>What it would send</h3>
      <${Json} id="dead-letter-content" value=${letter.data.content} />`}
  </section>`
}

export function DeadLettersPage () {
  const list = useLoad(async () => await call('GET', '/v1/admin/dead-letters?limit=500'), [], 10000)
  const action = useAction()
  const [inspected, setInspected] = useState(null)
  const act = async (run, done) => {
    await action.run(run, done)
    setInspected(null)
    await list.reload()
  }
  const replay = (id) => act(async () => await call('POST', `/v1/admin/dead-letters/${enc(id)}/replay`), `Dead letter ${id} is back in the relay outbox.`)
  const purge = (id) => act(async () => await call('DELETE', `/v1/admin/dead-letters/${enc(id)}`), `Dead letter ${id} purged.`)
  const replayAll = () => act(async () => await call('POST', '/v1/admin/dead-letters/replay'), (r) => `${r.replayed} dead letter(s) back in the relay outbox.`)
  const purgeAll = () => act(async () => await call('DELETE', '/v1/admin/dead-letters'), (r) => `${r.purged} dead letter(s) purged.`)
  return html`<h1>Relay dead letters</h1>
    <${ErrorLine} error=${list.error ?? action.error} />
    <${Done} text=${action.done} />
    ${list.data !== undefined && html`<p class="meta"><span id="dead-letters-total">${list.data.total}</span> dead letter(s)${list.data.next === null ? '' : `, the first ${list.data.deadLetters.length} shown`}
        <${ConfirmButton} name="replay-all" label="Replay all" onConfirm=${replayAll} />
        <${ConfirmButton} name="purge-all" label="Purge all" onConfirm=${purgeAll} /></p>
      <table class="list" id="dead-letters"><thead><tr><th>Job</th><th>Installation</th><th>Reason</th><th>Attempts</th><th>Topic</th><th>Dead since</th><th></th></tr></thead>
      <tbody>${list.data.deadLetters.map((d) => html`<tr key=${d.id} data-id=${d.id}>
        <td class="mono"><a href="#/dead-letters" class="inspect" onClick=${(e) => { e.preventDefault(); setInspected(d.id) }}>${d.id}</a></td>
        <td class="mono">${d.installationId}</td><td>${d.reason}</td><td>${d.attempts}</td><td class="mono">${d.topic}</td><td>${when(d.deadAt)}</td>
        <td><button type="button" data-action="replay" onClick=${() => replay(d.id)}>Replay</button>
          <${ConfirmButton} name="purge" label="Purge" onConfirm=${() => purge(d.id)} /></td>
      </tr>`)}</tbody></table>`}
    ${inspected !== null && html`<${Inspect} key=${inspected} id=${inspected} onClose=${() => setInspected(null)} />`}`
}

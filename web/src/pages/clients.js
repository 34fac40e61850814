import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call, enc, query } from '../api.js'
import { ConfirmButton, Done, ErrorLine, useAction, useLoad, when } from '../ui.js'

// GET /v1/admin/clients (?user=, ?search=), GET /v1/admin/clients/{id}, DELETE …/connection.

function ClientDetail ({ clientId, onClose }) {
  const detail = useLoad(async () => await call('GET', `/v1/admin/clients/${enc(clientId)}`), [clientId])
  const action = useAction()
  const disconnect = async () => {
    await action.run(async () => await call('DELETE', `/v1/admin/clients/${enc(clientId)}/connection`), 'Disconnected; its session stays.')
    await detail.reload()
  }
  const c = detail.data
  return html`<section class="detail" id="client-detail">
    <h2>Client <span class="mono" id="detail-client-id">${clientId}</span> <button type="button" onClick=${onClose}>Close</button></h2>
    <${ErrorLine} error=${detail.error ?? action.error} />
    <${Done} text=${action.done} />
    ${c !== undefined && html`<dl>
      <dt>Connected</dt><dd id="detail-connected">${c.connected ? 'yes' : 'no'}</dd>
      <dt>Owner</dt><dd>${c.owner ?? '—'}${c.installation ? ' (installation)' : ''}</dd>
      <dt>Transport</dt><dd>${c.connection?.transport ?? '—'}</dd>
      <dt>Address</dt><dd>${c.connection?.address ?? '—'}</dd>
      <dt>Connected since</dt><dd>${when(c.connection?.connectedAt)}</dd>
      <dt>Queued messages</dt><dd id="detail-queue">${c.session.queuedMessages}</dd>
      <dt>Will</dt><dd>${c.session.will ? 'stored' : 'none'}</dd>
    </dl>
    <h3>Subscriptions</h3>
    <table class="list" id="detail-subscriptions"><thead><tr><th>Filter</th><th>QoS</th></tr></thead>
      <tbody>${c.session.subscriptions.map((s) => html`<tr><td class="mono">${s.topic}</td><td>${s.qos}</td></tr>`)}</tbody></table>
    ${c.connected && html`<${ConfirmButton} name="disconnect" label="Disconnect" confirm="Close its connection" onConfirm=${disconnect} />`}`}
  </section>`
}

export function ClientsPage () {
  const [filter, setFilter] = useState({ user: '', search: '' })
  const [form, setForm] = useState(filter)
  const [selected, setSelected] = useState(null)
  const list = useLoad(async () => await call('GET', `/v1/admin/clients${query({ ...filter, limit: 500 })}`), [filter.user, filter.search], 5000)
  const submit = (event) => { event.preventDefault(); setFilter({ ...form }) }
  const open = (event) => {
    // a client id that is not connected can still have a session: look it up directly
    event.preventDefault()
    if (form.search !== '') setSelected(form.search)
  }
  return html`<h1>Clients and sessions</h1>
    <form class="row" id="client-search" onSubmit=${submit}>
      <label>User <input name="user" value=${form.user} onInput=${(e) => setForm({ ...form, user: e.currentTarget.value })} /></label>
      <label>Client id contains <input name="search" value=${form.search} onInput=${(e) => setForm({ ...form, search: e.currentTarget.value })} /></label>
      <button type="submit">Search</button>
      <button type="button" onClick=${open} title="Show the session of this exact client id, connected or not">Open session</button>
    </form>
    <${ErrorLine} error=${list.error} />
    ${list.data !== undefined && html`<p class="meta" id="clients-total">${list.data.total} connected${list.data.next === null ? '' : `, the first ${list.data.clients.length} shown: narrow the search`}</p>
      <table class="list" id="clients"><thead><tr><th>Client id</th><th>User</th><th>Transport</th><th>Address</th><th>Connected since</th><th>Node</th></tr></thead>
        <tbody>${list.data.clients.map((c) => html`<tr key=${c.clientId}>
          <td><a href="#/clients" class="mono client-link" onClick=${(e) => { e.preventDefault(); setSelected(c.clientId) }}>${c.clientId}</a></td>
          <td>${c.user ?? '(anonymous)'}</td><td>${c.transport ?? '—'}</td><td>${c.address ?? '—'}</td><td>${when(c.connectedAt)}</td><td>${c.node ?? '—'}</td>
        </tr>`)}</tbody></table>`}
    ${selected !== null && html`<${ClientDetail} key=${selected} clientId=${selected} onClose=${() => { setSelected(null); void list.reload() }} />`}`
}

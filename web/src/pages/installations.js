import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call, enc, query } from '../api.js'
import { ConfirmButton, Done, ErrorLine, useAction, useLoad, when } from '../ui.js'

// GET /v1/installations?user= (admins may name any user) and DELETE /v1/installations/{id}.
// The API returns a token suffix only: the push token itself never reaches the console.

export function InstallationsPage () {
  const [user, setUser] = useState('')
  const [shown, setShown] = useState(null)
  const action = useAction()
  const list = useLoad(async () => shown === null ? null : await call('GET', `/v1/installations${query({ user: shown })}`), [shown])
  const remove = async (id) => {
    await action.run(async () => await call('DELETE', `/v1/installations/${enc(id)}`), `Installation ${id} deleted.`)
    await list.reload()
  }
  return html`<h1>Installations</h1>
    <form class="row" id="installation-search" onSubmit=${(e) => { e.preventDefault(); setShown(user.trim()) }}>
      <label>User <input name="user" value=${user} onInput=${(e) => setUser(e.currentTarget.value)} /></label>
      <button type="submit">Show</button>
    </form>
    <${ErrorLine} error=${list.error ?? action.error} />
    <${Done} text=${action.done} />
    ${list.data?.installations !== undefined && html`<p class="meta">${list.data.installations.length} installation(s) of <span class="mono">${shown}</span></p>
      <table class="list" id="installations"><thead><tr><th>Installation (client id)</th><th>Provider</th><th>Token ends</th><th>Environment</th><th>APNs topic</th><th>MQTT</th><th>Connected</th><th>Created</th><th></th></tr></thead>
      <tbody>${list.data.installations.map((i) => html`<tr key=${i.id}>
        <td class="mono">${i.id}</td>
        <td>${i.pushToken?.provider ?? '—'}</td>
        <td class="mono">${i.pushToken === null ? '—' : `…${i.pushToken.tokenSuffix}`}</td>
        <td>${i.pushToken?.effectiveEnvironment ?? '—'}</td>
        <td class="mono">${i.pushToken?.apnsTopic ?? '—'}</td>
        <td>${i.mqtt ? 'yes' : 'push only'}</td>
        <td>${i.connected ? 'yes' : 'no'}</td>
        <td>${when(i.createdAt)}</td>
        <td><${ConfirmButton} name="delete-installation" label="Delete" confirm="Delete it and its session" onConfirm=${() => remove(i.id)} /></td>
      </tr>`)}</tbody></table>`}`
}

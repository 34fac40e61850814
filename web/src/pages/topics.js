import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call, enc } from '../api.js'
import { ConfirmButton, Done, ErrorLine, useAction, useLoad, when } from '../ui.js'

// GET /v1/topics, PUT /v1/topics/{name} (create or replace the ACL), DELETE /v1/topics/{name}.

const entries = (text) => text.split(/[\s,]+/).filter((entry) => entry !== '')
const empty = { name: '', subscribe: 'authenticated', publish: 'role:service role:admin', editing: false }

export function TopicsPage () {
  const list = useLoad(async () => await call('GET', '/v1/topics'), [])
  const action = useAction()
  const [form, setForm] = useState(empty)
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value })
  const save = async (event) => {
    event.preventDefault()
    const body = { acl: { subscribe: entries(form.subscribe), publish: entries(form.publish) } }
    const saved = await action.run(async () => await call('PUT', `/v1/topics/${enc(form.name.trim())}`, body), (t) => `Topic ${t.mqttTopic} saved.`)
    if (saved !== undefined) setForm(empty)
    await list.reload()
  }
  const edit = (topic) => setForm({ name: topic.name, subscribe: topic.acl.subscribe.join(' '), publish: topic.acl.publish.join(' '), editing: true })
  const remove = async (name) => {
    await action.run(async () => await call('DELETE', `/v1/topics/${enc(name)}`), `Topic app/${name} deleted.`)
    await list.reload()
  }
  return html`<h1>App topics</h1>
    <${ErrorLine} error=${list.error ?? action.error} />
    <${Done} text=${action.done} />
    ${list.data !== undefined && html`<table class="list" id="topics"><thead><tr><th>MQTT topic</th><th>Subscribe</th><th>Publish</th><th>Updated</th><th></th></tr></thead>
      <tbody>${list.data.topics.map((t) => html`<tr key=${t.name}>
        <td class="mono">${t.mqttTopic}</td>
        <td class="mono">${t.acl.subscribe.join(' ')}</td>
        <td class="mono">${t.acl.publish.join(' ')}</td>
        <td>${when(t.updatedAt)}</td>
        <td><button type="button" data-action="edit-topic" onClick=${() => edit(t)}>Edit ACL</button>
          <${ConfirmButton} name="delete-topic" label="Delete" onConfirm=${() => remove(t.name)} /></td>
      </tr>`)}</tbody></table>`}
    <h2>${form.editing ? `Edit app/${form.name}` : 'Create a topic'}</h2>
    <form id="topic-form" class="stack" onSubmit=${save}>
      <label>Name (app/…) <input name="name" required readOnly=${form.editing} value=${form.name} onInput=${set('name')} /></label>
      <label>Who may subscribe <input name="subscribe" value=${form.subscribe} onInput=${set('subscribe')} /></label>
      <label>Who may publish <input name="publish" value=${form.publish} onInput=${set('publish')} /></label>
      <p class="hint">Entries separated by spaces: <code>authenticated</code>, <code>user:alice</code>, <code>group:ops</code>, <code>role:service</code>.</p>
      <div class="row"><button type="submit">${form.editing ? 'Save ACL' : 'Create'}</button>
        ${form.editing && html`<button type="button" onClick=${() => setForm(empty)}>Cancel</button>`}</div>
    </form>`
}

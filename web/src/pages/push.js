import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call } from '../api.js'
import { ErrorLine, Json } from '../ui.js'

// POST /v1/push, built from the form; the JSON shown is exactly the body sent.

const initial = { kind: 'topic', target: '', title: '', body: '', data: '', ttl: '', fcm: '', apns: '', mqtt: '' }

/** `key=value` lines into FCM's flat string map. */
function parseData (text) {
  const data = {}
  for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '')) {
    const at = line.indexOf('=')
    if (at <= 0) throw new Error(`data: "${line}" is not key=value`)
    data[line.slice(0, at).trim()] = line.slice(at + 1).trim()
  }
  return data
}

function section (name, text) {
  if (text.trim() === '') return {}
  try {
    return { [name]: JSON.parse(text) }
  } catch {
    throw new Error(`${name}: not JSON`)
  }
}

/** The request body, or an Error saying what in the form is wrong. */
function requestOf (form) {
  try {
    const notification = { ...(form.title !== '' && { title: form.title }), ...(form.body !== '' && { body: form.body }) }
    const data = parseData(form.data)
    return {
      to: { [form.kind]: form.target.trim() },
      ...(Object.keys(notification).length > 0 && { notification }),
      ...(Object.keys(data).length > 0 && { data }),
      ...(form.ttl.trim() !== '' && { ttl: Number(form.ttl) }),
      ...section('fcm', form.fcm),
      ...section('apns', form.apns),
      ...section('mqtt', form.mqtt),
    }
  } catch (err) {
    return err
  }
}

export function PushPage () {
  const [form, setForm] = useState(initial)
  const [answer, setAnswer] = useState(null)
  const [error, setError] = useState(null)
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value })
  const request = requestOf(form)
  const send = async (event) => {
    event.preventDefault()
    setAnswer(null)
    setError(null)
    if (request instanceof Error) return setError(request)
    try {
      setAnswer(await call('POST', '/v1/push', request))
    } catch (err) {
      setError(err)
    }
  }
  return html`<h1>Send a push</h1>
    <div class="columns">
      <form id="push-form" class="stack" onSubmit=${send}>
        <div class="row">
          <label>To <select name="kind" value=${form.kind} onChange=${set('kind')}>
            <option value="topic">topic</option><option value="user">user (direct push)</option><option value="installation">installation</option>
          </select></label>
          <label class="grow">Target <input name="target" required value=${form.target} onInput=${set('target')} placeholder="app/news, alice or an installation id" /></label>
        </div>
        <fieldset><legend>notification</legend>
          <label>Title <input name="title" value=${form.title} onInput=${set('title')} /></label>
          <label>Body <input name="body" value=${form.body} onInput=${set('body')} /></label>
        </fieldset>
        <label>data (one key=value a line) <textarea name="data" rows="3" value=${form.data} onInput=${set('data')} /></label>
        <label>ttl (seconds) <input name="ttl" type="number" min="0" value=${form.ttl} onInput=${set('ttl')} /></label>
        <label>fcm (JSON) <textarea name="fcm" rows="2" placeholder='{"priority": "high", "collapseKey": "news"}' value=${form.fcm} onInput=${set('fcm')} /></label>
        <label>apns (JSON) <textarea name="apns" rows="2" placeholder='{"sound": "default", "badge": 1}' value=${form.apns} onInput=${set('apns')} /></label>
        <label>mqtt (JSON) <textarea name="mqtt" rows="1" placeholder='{"qos": 1}' value=${form.mqtt} onInput=${set('mqtt')} /></label>
        <button type="submit">Send</button>
      </form>
      <div>
        <h2>Request</h2>
        ${request instanceof Error ? html`<${ErrorLine} error=${request} />` : html`<${Json} id="push-preview" value=${request} />`}
        <h2>Answer</h2>
        <${ErrorLine} error=${error} />
        ${answer !== null && html`<${Json} id="push-answer" value=${answer} />`}
      </div>
    </div>`
}

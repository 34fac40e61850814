import { html } from 'htm/preact'
import { useState } from 'preact/hooks'
import { call, enc, query } from '../api.js'
import { ErrorLine, Json, useLoad, when } from '../ui.js'

// Read-only: GET /v1/admin/buckets?scope= names a scope's buckets; their
// objects come from the scope's own GET …/buckets/{bucket}/objects.

const PAGE = 20

function Objects ({ scope, bucket }) {
  const [after, setAfter] = useState([])
  const cursor = after[after.length - 1]
  const page = useLoad(async () => await call('GET', `/v1/${scope.split('/').map(enc).join('/')}/buckets/${enc(bucket)}/objects${query({ limit: PAGE, after: cursor })}`), [scope, bucket, cursor])
  return html`<section class="detail" id="bucket-objects">
    <h2>Objects of <span class="mono">${scope}/buckets/${bucket}</span></h2>
    <${ErrorLine} error=${page.error} />
    ${page.data !== undefined && html`<table class="list"><thead><tr><th>Id</th><th>Version</th><th>Owner</th><th>Modified</th><th>Body</th></tr></thead>
      <tbody>${page.data.objects.map((o) => html`<tr key=${o.id}>
        <td class="mono">${o.id}</td><td>${o.version}</td><td>${o.owner ?? '—'}</td><td>${when(o.modifiedAt)}</td><td><${Json} value=${o.body} /></td>
      </tr>`)}</tbody></table>
      <div class="row">
        ${after.length > 0 && html`<button type="button" onClick=${() => setAfter(after.slice(0, -1))}>Previous</button>`}
        ${page.data.next !== null && html`<button type="button" onClick=${() => setAfter([...after, page.data.next])}>Next</button>`}
      </div>`}
  </section>`
}

export function BucketsPage () {
  const [scopeText, setScopeText] = useState('app')
  const [scope, setScope] = useState('app')
  const [bucket, setBucket] = useState(null)
  const list = useLoad(async () => await call('GET', `/v1/admin/buckets${query({ scope, limit: 1000 })}`), [scope])
  return html`<h1>Buckets</h1>
    <form class="row" id="bucket-scope" onSubmit=${(e) => { e.preventDefault(); setBucket(null); setScope(scopeText.trim()) }}>
      <label>Scope <input name="scope" value=${scopeText} onInput=${(e) => setScopeText(e.currentTarget.value)} placeholder="app, users/alice or groups/ops" /></label>
      <button type="submit">Show</button>
    </form>
    <${ErrorLine} error=${list.error} />
    ${list.data?.next != null && html`<p class="meta">The first ${list.data.buckets.length} buckets of ${list.data.scope}, in name order.</p>`}
    ${list.data !== undefined && html`<table class="list" id="buckets"><thead><tr><th>Bucket</th><th>Events topic</th><th>ACL (read / write)</th></tr></thead>
      <tbody>${list.data.buckets.map((b) => html`<tr key=${b.name}>
        <td><a href="#/buckets" class="mono bucket-link" onClick=${(e) => { e.preventDefault(); setBucket(b.name) }}>${b.name}</a></td>
        <td class="mono">${b.eventsTopic}</td>
        <td class="mono">${b.acl === undefined ? '—' : `${b.acl.read.join(' ')} / ${b.acl.write.join(' ')}`}</td>
      </tr>`)}</tbody></table>`}
    ${bucket !== null && html`<${Objects} key=${`${scope}/${bucket}`} scope=${list.data?.scope ?? scope} bucket=${bucket} />`}`
}

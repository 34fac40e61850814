import { html } from 'htm/preact'
import { useEffect, useState } from 'preact/hooks'
import { call, forgetToken, storedToken, storeToken, whenRefused } from './api.js'
import { BucketsPage } from './pages/buckets.js'
import { ClientsPage } from './pages/clients.js'
import { DeadLettersPage } from './pages/dead-letters.js'
import { InstallationsPage } from './pages/installations.js'
import { OverviewPage } from './pages/overview.js'
import { PushPage } from './pages/push.js'
import { TopicsPage } from './pages/topics.js'
import { ErrorLine } from './ui.js'

// Pages by hash (#/clients): the server serves one document, and the hash never reaches it.
const pages = [
  ['overview', 'Overview', OverviewPage],
  ['clients', 'Clients', ClientsPage],
  ['installations', 'Installations', InstallationsPage],
  ['topics', 'App topics', TopicsPage],
  ['push', 'Send a push', PushPage],
  ['dead-letters', 'Dead letters', DeadLettersPage],
  ['buckets', 'Buckets', BucketsPage],
]

function currentPage () {
  const name = location.hash.replace(/^#\/?/, '').split('?')[0]
  return pages.find(([key]) => key === name) ?? pages[0]
}

/** Pasting an admin token: checked against an admin endpoint before it is kept. */
function SignIn ({ onSignedIn, refusal }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState(refusal)
  const submit = async (event) => {
    event.preventDefault()
    const trimmed = token.trim()
    try {
      await call('GET', '/v1/admin/overview', undefined, trimmed)
      storeToken(trimmed)
      onSignedIn()
    } catch (err) {
      setError(err.status === 403 ? new Error('This token is not an admin\'s (403 NOT_AUTHORIZED).') : err)
    }
  }
  return html`<main class="signin">
    <h1>Herald console</h1>
    <form id="signin" onSubmit=${submit}>
      <label for="token">Admin token (JWT with role admin)</label>
      <textarea id="token" rows="5" autocomplete="off" spellcheck="false" value=${token} onInput=${(e) => setToken(e.currentTarget.value)} />
      <p class="hint">Kept in this tab's session storage only; mint one with <code>herald token --sub admin --role admin</code>.</p>
      <button type="submit">Sign in</button>
    </form>
    <${ErrorLine} error=${error} />
  </main>`
}

export function App () {
  const [signedIn, setSignedIn] = useState(storedToken() !== null)
  const [refusal, setRefusal] = useState(null)
  const [page, setPage] = useState(currentPage)
  useEffect(() => {
    const onHash = () => setPage(currentPage())
    addEventListener('hashchange', onHash)
    whenRefused((error) => {
      forgetToken()
      setRefusal(error)
      setSignedIn(false)
    })
    return () => removeEventListener('hashchange', onHash)
  }, [])

  if (!signedIn) return html`<${SignIn} refusal=${refusal} onSignedIn=${() => { setRefusal(null); setSignedIn(true) }} />`
  const [key, , Page] = page
  const signOut = () => { forgetToken(); setSignedIn(false) }
  return html`<div class="layout">
    <nav>
      <strong class="brand">Herald</strong>
      ${pages.map(([name, label]) => html`<a href=${`#/${name}`} class=${name === key ? 'active' : ''} data-page=${name}>${label}</a>`)}
      <button type="button" class="signout" onClick=${signOut}>Sign out</button>
    </nav>
    <main id=${`page-${key}`}><${Page} /></main>
  </div>`
}

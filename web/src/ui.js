import { html } from 'htm/preact'
import { useCallback, useEffect, useState } from 'preact/hooks'

// Small pieces the pages share. Every value is rendered as a text child: Preact
// escapes it, and nothing here ever sets HTML from a string.

/** Runs `load` now and whenever `deps` change (and every `pollMs`); exposes data, error and reload. */
export function useLoad (load, deps, pollMs) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true })
  const reload = useCallback(async () => {
    try {
      setState((s) => ({ ...s, loading: true }))
      const data = await load()
      setState({ data, error: null, loading: false })
    } catch (error) {
      setState({ data: undefined, error, loading: false })
    }
  }, deps)
  useEffect(() => {
    void reload()
    if (pollMs === undefined) return undefined
    const timer = setInterval(async () => {
      try {
        const data = await load()
        setState({ data, error: null, loading: false })
      } catch (error) {
        setState((s) => ({ ...s, error }))
      }
    }, pollMs)
    return () => clearInterval(timer)
  }, [reload])
  return { ...state, reload }
}

/** Runs an action, keeping its error and a message for the page. */
export function useAction () {
  const [state, setState] = useState({ busy: false, error: null, done: null })
  const run = async (action, done) => {
    setState({ busy: true, error: null, done: null })
    try {
      const result = await action()
      setState({ busy: false, error: null, done: typeof done === 'function' ? done(result) : done ?? null })
      return result
    } catch (error) {
      setState({ busy: false, error, done: null })
      return undefined
    }
  }
  return { ...state, run }
}

export function ErrorLine ({ error }) {
  if (error === null || error === undefined) return null
  return html`<p class="error" role="alert">${error.message}</p>`
}

export function Done ({ text }) {
  return text === null || text === undefined ? null : html`<p class="done" role="status">${text}</p>`
}

export function Json ({ value, id }) {
  return html`<pre class="json" id=${id}>${JSON.stringify(value, null, 2)}</pre>`
}

export const when = (iso) => (iso === null || iso === undefined ? '—' : new Date(iso).toLocaleString())

/** A delete button that asks once more in place (no window.confirm). */
export function ConfirmButton ({ label, confirm = 'Really?', onConfirm, name }) {
  const [asking, setAsking] = useState(false)
  if (!asking) return html`<button type="button" class="danger" data-action=${name} onClick=${() => setAsking(true)}>${label}</button>`
  return html`<span class="confirm">
    <button type="button" class="danger" data-action=${`${name}-confirm`} onClick=${() => { setAsking(false); void onConfirm() }}>${confirm}</button>
    <button type="button" onClick=${() => setAsking(false)}>Cancel</button>
  </span>`
}

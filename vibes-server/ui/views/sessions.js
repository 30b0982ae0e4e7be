// views/sessions.js: the sessions list (GET /api/sessions, polled each
// second), the search form, and the search view (GET /api/search), whose
// FTS5 snippets mark matches with [ and ]: highlighted as <mark>, as text.

import { html, useState, useEffect } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { route, navigate } from '../router.js';
import { usePoll, useStore, ErrorBox, Badge, dateTime, enc, show } from '../common.js';

export function SearchForm({ initial = '' }) {
  const [q, setQ] = useState(initial);
  useEffect(() => setQ(initial), [initial]);
  const submit = (e) => {
    e.preventDefault();
    // The input itself: a keystroke just typed may not be rendered yet.
    const value = e.currentTarget.querySelector('[data-testid="search-input"]').value.trim();
    if (value) navigate(`/search?q=${enc(value)}`);
  };
  return html`
    <form class="search" role="search" onSubmit=${submit}>
      <label class="sr-only" for="search-input">Search messages</label>
      <input id="search-input" data-testid="search-input" type="search" placeholder="Search messages (FTS5: refactor AND parser)"
        value=${q} onInput=${(e) => setQ(e.target.value)} />
      <button type="submit" data-testid="search-submit">Search</button>
    </form>`;
}

export function SessionsView() {
  const [sessions, setSessions] = useState(null);
  const [res, setRes] = useState(null);

  usePoll(async () => {
    const r = await api('/api/sessions');
    setRes(r);
    if (r.ok && r.data && Array.isArray(r.data.sessions)) setSessions(r.data.sessions);
  }, 1000);

  const sorted = (sessions || []).slice().sort((a, b) => String(b.last_timestamp || '').localeCompare(String(a.last_timestamp || '')));
  return html`
    <section class="view">
      <h1>Sessions</h1>
      <${SearchForm} />
      <${ErrorBox} res=${res} />
      ${sessions == null && !res ? html`<p class="muted">Loading…</p>` : null}
      ${sessions && sessions.length === 0 ? html`<p class="empty">No sessions yet.</p>` : null}
      ${sorted.length > 0 && html`
        <div class="session-list">
          <div class="session-row head" aria-hidden="true"><span>session</span><span>state</span><span class="num">events</span><span>first</span><span>last</span></div>
          ${sorted.map((s) => html`
            <a class="session-row" key=${s.session_id} data-testid="session-row" data-session=${s.session_id}
              href=${`/sessions/${enc(s.session_id)}`}>
              <span class="mono id" data-field="session_id">${s.session_id}</span>
              <span data-field="state"><${Badge} state=${s.state} tone=${s.state === 'open' ? 'info' : 'neutral'} />${s.closed_by ? html` <span class="muted small">${s.closed_by}</span>` : null}</span>
              <span class="num mono" data-field="events">${show(s.events)}</span>
              <span data-field="first_timestamp">${dateTime(s.first_timestamp)}</span>
              <span data-field="last_timestamp">${dateTime(s.last_timestamp)}</span>
            </a>`)}
        </div>`}
    </section>`;
}

// The snippet is the text with [ ] around each match (and … where it is
// cut). When the text has brackets of its own, the snippet is lined up
// with it so that only the inserted ones count as markers.
function bySplit(s) {
  const parts = [];
  const re = /\[([^\]]*)\]/g;
  let last = 0;
  let m;
  while ((m = re.exec(s))) {
    if (m.index > last) parts.push({ text: s.slice(last, m.index) });
    parts.push({ text: m[1], mark: true });
    last = m.index + m[0].length;
  }
  if (last < s.length) parts.push({ text: s.slice(last) });
  return parts;
}

function alignFrom(s, text, j) {
  const parts = [];
  let cur = '';
  let inMark = false;
  for (const c of s) {
    if (j < text.length && text.startsWith(c, j)) {
      cur += c;
      j += c.length;
    } else if (c === '[' && !inMark) {
      if (cur) parts.push({ text: cur });
      cur = '';
      inMark = true;
    } else if (c === ']' && inMark) {
      parts.push({ text: cur, mark: true });
      cur = '';
      inMark = false;
    } else {
      return null;
    }
  }
  if (inMark) return null;
  if (cur) parts.push({ text: cur });
  return parts;
}

export function snippetParts(snippet, text) {
  const s0 = String(snippet || '');
  if (typeof text !== 'string' || !/[[\]]/.test(text)) return bySplit(s0);
  let s = s0;
  const lead = s.startsWith('…') && !text.startsWith('…');
  const trail = s.endsWith('…') && !text.endsWith('…');
  if (lead) s = s.slice(1);
  if (trail) s = s.slice(0, -1);
  for (let j = 0; j <= text.length; j++) {
    const parts = alignFrom(s, text, j);
    if (parts) return [...(lead ? [{ text: '…' }] : []), ...parts, ...(trail ? [{ text: '…' }] : [])];
  }
  return bySplit(s0);
}

/** An FTS5 snippet as text, its matches in <mark>. */
export function Snippet({ snippet, text }) {
  const parts = snippetParts(snippet, text);
  return html`<span class="snippet">${parts.map((p) => (p.mark ? html`<mark>${p.text}</mark>` : p.text))}</span>`;
}

export function SearchView() {
  const r = useStore(route);
  const q = (r.query.get('q') || '').trim();
  const [state, setState] = useState({ q: null, res: null });

  useEffect(() => {
    if (!q) {
      setState({ q, res: null });
      return undefined;
    }
    let gone = false;
    setState({ q, res: null });
    api(`/api/search?q=${enc(q)}&limit=50`).then((res) => {
      if (!gone) setState({ q, res });
    });
    return () => {
      gone = true;
    };
  }, [q]);

  const res = state.res;
  const results = res && res.ok && res.data ? res.data.results || [] : null;
  return html`
    <section class="view">
      <h1>Search</h1>
      <${SearchForm} initial=${q} />
      ${res && !res.ok && html`<${ErrorBox} text=${res.error === 'invalid_search' ? `Not a valid search: ${res.detail || ''}` : null} res=${res} />`}
      ${q && !res ? html`<p class="muted">Searching…</p>` : null}
      ${results && results.length === 0 ? html`<p class="empty">No messages match “${q}”.</p>` : null}
      ${results && results.length > 0 && html`
        <p class="muted">${results.length} result${results.length === 1 ? '' : 's'}${results.length >= 50 ? ' (the best 50)' : ''}</p>
        <div class="results-list">
          ${results.map((m) => html`
            <div class="search-result card" data-testid="search-result" data-session=${m.session_id} data-offset=${m.offset}>
              <div class="meta">
                <a href=${`/sessions/${enc(m.session_id)}`} class="mono">${m.session_id}</a>
                <span class="role">${m.role}</span>
                <span class="muted">${dateTime(m.timestamp)}</span>
                <span class="muted mono">@${m.offset}</span>
              </div>
              <div class="snippet-line"><${Snippet} snippet=${m.snippet != null ? m.snippet : m.text} text=${m.text} /></div>
            </div>`)}
        </div>`}
    </section>`;
}

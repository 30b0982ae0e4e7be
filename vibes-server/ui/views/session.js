// views/session.js: one session: its messages (GET /api/sessions/{id}/
// messages, newest page polled, older pages on demand, shown oldest to
// newest) and its transcript (GET /api/sessions/{id}/transcript, JSON lines).

import { html, useState, useEffect, useRef } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { usePoll, ErrorBox, dateTime, clockTime, pretty, enc, show } from '../common.js';

const PAGE = 100;
const TRANSCRIPT_SHOWN = 500;

function merge(map, list) {
  const next = new Map(map);
  for (const m of list) next.set(m.id, m);
  return next;
}

export function SessionView({ id }) {
  const base = `/api/sessions/${enc(id)}`;
  return html`
    <section class="view">
      <nav class="crumbs" aria-label="breadcrumb"><a href="/sessions">Sessions</a> / <span class="mono">${id}</span></nav>
      <h1 class="mono break">${id}</h1>
      <p class="links">
        <a data-testid="session-assessment-link" href=${`/assessment/${enc(id)}`}>Assessment</a>
        <a data-testid="session-firehose-link" href=${`/firehose?from=beginning&session=${enc(id)}`}>Firehose of this session</a>
      </p>
      <${Messages} key=${`m${id}`} base=${base} />
      <${Transcript} key=${`t${id}`} base=${base} />
    </section>`;
}

function Messages({ base }) {
  // The messages by id live in a ref; `version` re-renders after a change.
  const messages = useRef(new Map());
  const [, setVersion] = useState(0);
  const [res, setRes] = useState(null);
  const [older, setOlder] = useState({ cursor: undefined, loading: false, res: null });
  const cursorSet = useRef(false);

  const put = (map) => {
    messages.current = map;
    setVersion((v) => v + 1);
  };

  usePoll(async () => {
    const r = await api(`${base}/messages?limit=${PAGE}`);
    setRes(r);
    if (!r.ok || !r.data) return;
    const list = r.data.messages || [];
    const old = messages.current;
    const maxOld = old.size ? Math.max(...old.keys()) : -1;
    const minNew = list.length ? Math.min(...list.map((m) => m.id)) : Infinity;
    if (old.size && r.data.next_before != null && minNew > maxOld) {
      // More arrived than a page holds: start again from this page.
      put(merge(new Map(), list));
      setOlder({ cursor: r.data.next_before, loading: false, res: null });
      return;
    }
    put(merge(old, list));
    if (!cursorSet.current) {
      cursorSet.current = true;
      setOlder({ cursor: r.data.next_before, loading: false, res: null });
    }
  }, 2000);

  async function loadOlder() {
    if (older.cursor == null) return;
    setOlder((o) => ({ ...o, loading: true }));
    const r = await api(`${base}/messages?limit=${PAGE}&before=${enc(older.cursor)}`);
    if (r.ok && r.data) {
      put(merge(messages.current, r.data.messages || []));
      setOlder({ cursor: r.data.next_before, loading: false, res: null });
    } else {
      setOlder((o) => ({ ...o, loading: false, res: r }));
    }
  }

  const list = [...messages.current.values()].sort((a, b) => a.id - b.id);
  return html`
    <section class="panel" aria-labelledby="messages-title">
      <h2 id="messages-title">Messages <span class="muted small">${list.length}</span></h2>
      ${res && !res.ok && html`<${ErrorBox} res=${res} text=${res.error === 'unknown_session' ? `No messages: ${res.detail || 'unknown session'}` : null} />`}
      ${older.cursor != null && html`<button type="button" data-testid="load-older" disabled=${older.loading} onClick=${loadOlder}>
        ${older.loading ? 'Loading…' : 'Load older messages'}</button>`}
      <${ErrorBox} res=${older.res} />
      ${res && res.ok && list.length === 0 ? html`<p class="empty">No messages.</p>` : null}
      <div class="messages">
        ${list.map((m) => html`<${Message} key=${m.id} m=${m} />`)}
      </div>
    </section>`;
}

function Message({ m }) {
  const meta = m.meta || {};
  const source = meta.source || meta.tool || '';
  const flags = [];
  if (meta.is_error) flags.push('error');
  if (meta.approved === true) flags.push('approved');
  if (meta.approved === false) flags.push('denied');
  return html`
    <div class=${`message role-${m.role}${meta.is_error ? ' is-error' : ''}`} data-testid="message" data-role=${m.role} data-id=${m.id} data-offset=${m.offset}>
      <div class="meta">
        <span class="role" data-field="role">${m.role}</span>
        ${source && html`<span class="source" data-field="source">${source}</span>`}
        ${flags.map((f) => html`<span class="flag">${f}</span>`)}
        <time class="muted" datetime=${m.timestamp} title=${dateTime(m.timestamp)}>${clockTime(m.timestamp)}</time>
        <span class="muted mono">@${m.offset}</span>
      </div>
      <div class="text" data-field="text">${m.text}</div>
    </div>`;
}

function parseLines(text) {
  const out = [];
  for (const line of String(text || '').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push({ value: JSON.parse(line) });
    } catch {
      out.push({ raw: line });
    }
  }
  return out;
}

function Transcript({ base }) {
  const [state, setState] = useState({ res: null, lines: null });
  const [all, setAll] = useState(false);
  const [nonce, setNonce] = useState(0);

  useEffect(() => {
    let gone = false;
    api(`${base}/transcript`, { text: true }).then((res) => {
      if (!gone) setState({ res, lines: res.ok ? parseLines(res.data) : null });
    });
    return () => {
      gone = true;
    };
  }, [base, nonce]);

  const lines = state.lines || [];
  const shown = all ? lines : lines.slice(0, TRANSCRIPT_SHOWN);
  return html`
    <section class="panel" data-testid="transcript" aria-labelledby="transcript-title">
      <h2 id="transcript-title">Transcript <span class="muted small">${state.lines ? `${lines.length} events` : ''}</span>
        <button type="button" class="small-button" data-testid="transcript-refresh" onClick=${() => setNonce((n) => n + 1)}>Refresh</button></h2>
      <${ErrorBox} res=${state.res} />
      ${!state.res ? html`<p class="muted">Loading…</p>` : null}
      ${state.lines && lines.length === 0 ? html`<p class="empty">The transcript is empty.</p>` : null}
      <div class="transcript">
        ${shown.map((l, i) => html`<${TranscriptEntry} key=${i} line=${l} />`)}
      </div>
      ${!all && lines.length > TRANSCRIPT_SHOWN && html`<button type="button" onClick=${() => setAll(true)}>
        Show all ${lines.length} events</button>`}
    </section>`;
}

function TranscriptEntry({ line }) {
  if (line.raw != null) {
    return html`<div class="transcript-entry bad" data-testid="transcript-entry"><code>${line.raw}</code></div>`;
  }
  const v = line.value || {};
  const ev = v.event || {};
  const type = ev.type === 'claude' && ev.event ? `claude/${ev.event.type}` : show(ev.type);
  return html`
    <details class="transcript-entry" data-testid="transcript-entry" data-offset=${v.offset}>
      <summary><span class="mono off">${show(v.offset)}</span> <span class="mono time">${clockTime(v.timestamp)}</span> <span class="type">${type}</span></summary>
      <pre class="json">${pretty(v)}</pre>
    </details>`;
}

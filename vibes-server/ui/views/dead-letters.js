// views/dead-letters.js: open dead letters (GET /api/dead-letters, polled
// each second), each with its event on demand and replay / skip buttons.
// The last result stays visible after its row is gone.

import { html, useState } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { usePoll, ErrorBox, errorText, pretty, enc } from '../common.js';

const keyOf = (d) => `${d.group}\u0000${d.offset}`;

export function DeadLettersView() {
  const [letters, setLetters] = useState(null);
  const [res, setRes] = useState(null);
  const [results, setResults] = useState([]);
  const [events, setEvents] = useState({});
  const [busy, setBusy] = useState({});
  // Resolved here: hidden until a poll started after the answer drops them.
  const [hidden, setHidden] = useState({});

  usePoll(async () => {
    const started = Date.now();
    const r = await api('/api/dead-letters');
    setRes(r);
    if (r.ok && Array.isArray(r.data)) {
      setLetters(r.data);
      setHidden((h) => {
        const next = {};
        for (const [k, at] of Object.entries(h)) if (at >= started) next[k] = at;
        return next;
      });
    }
  }, 1000);

  async function act(d, action) {
    const k = keyOf(d);
    setBusy((b) => ({ ...b, [k]: true }));
    const r = await api(`/api/dead-letters/${enc(d.group)}/${enc(d.offset)}/${action}`, { method: 'POST' });
    setBusy((b) => ({ ...b, [k]: false }));
    const text = r.ok
      ? `${r.data.group} @ ${r.data.offset}: resolved by ${r.data.resolved}`
      : `${d.group} @ ${d.offset}: ${action} failed: ${errorText(r)}`;
    setResults((rs) => [{ ok: r.ok, text, at: Date.now() }, ...rs].slice(0, 5));
    if (r.ok) setHidden((h) => ({ ...h, [k]: Date.now() }));
  }

  async function toggleEvent(d) {
    const k = keyOf(d);
    if (events[k]) {
      setEvents((e) => ({ ...e, [k]: null }));
      return;
    }
    setEvents((e) => ({ ...e, [k]: { loading: true } }));
    const r = await api(`/api/events?from=${enc(d.offset)}&limit=1`);
    let value;
    if (!r.ok) value = { error: errorText(r) };
    else {
      const ev = (r.data.events || []).find((e) => e.offset === d.offset);
      value = ev ? { json: pretty(ev) } : { error: `no event at offset ${d.offset}` };
    }
    setEvents((e) => ({ ...e, [k]: value }));
  }

  const shown = (letters || []).filter((d) => !hidden[keyOf(d)]);
  return html`
    <section class="view">
      <h1>Dead letters</h1>
      <${ErrorBox} res=${res} />
      ${results.length > 0 && html`<div class="results" aria-live="polite">
        ${results.map((x, i) => html`<div class=${x.ok ? 'notice' : 'error'} data-testid=${i === 0 ? 'dead-letter-result' : 'dead-letter-result-older'}>${x.text}</div>`)}
      </div>`}
      ${letters == null && !res ? html`<p class="muted">Loading…</p>` : null}
      ${letters && shown.length === 0 ? html`<p class="empty" data-testid="dead-letters-empty">No open dead letters</p>` : null}
      ${shown.length > 0 && html`
        <div class="table-wrap">
          <table class="grid">
            <thead><tr><th>group</th><th class="num">offset</th><th>error</th><th class="num">attempts</th><th>actions</th></tr></thead>
            <tbody>
              ${shown.map((d) => {
                const k = keyOf(d);
                const ev = events[k];
                return html`
                  <tr key=${k} data-testid="dead-letter-row" data-group=${d.group} data-offset=${d.offset}>
                    <td data-field="group" data-label="group">${d.group}</td>
                    <td data-field="offset" data-label="offset" class="num mono">${d.offset}</td>
                    <td data-field="error" data-label="error" class="wrap">
                      ${d.error}
                      ${ev && (ev.loading ? html`<div class="muted">Loading…</div>`
                        : ev.error ? html`<div class="error">${ev.error}</div>`
                          : html`<pre class="json" data-testid="dead-letter-event">${ev.json}</pre>`)}
                    </td>
                    <td data-field="attempts" data-label="attempts" class="num mono">${d.attempts}</td>
                    <td data-label="actions" class="actions">
                      <button type="button" data-action="show-event" aria-expanded=${String(!!ev)} onClick=${() => toggleEvent(d)}>
                        ${ev ? 'Hide event' : 'Show event'}</button>
                      <button type="button" data-action="replay" disabled=${!!busy[k]} onClick=${() => act(d, 'replay')}>Replay</button>
                      <button type="button" data-action="skip" disabled=${!!busy[k]} onClick=${() => act(d, 'skip')}>Skip</button>
                    </td>
                  </tr>`;
              })}
            </tbody>
          </table>
        </div>`}
    </section>`;
}

// views/firehose.js: the live log (WS /ws/firehose). Frames go to a plain
// array and are flushed into state once per animation frame; at most 500
// rows stay in the DOM. A reconnect resumes after the last offset received
// (no gap, no duplicate). window.__vibes.firehose tracks {lastOffset, received}.

import { html, Component, useState, useEffect, useRef } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api, openSocket } from '../api.js';
import { route, navigate } from '../router.js';
import { useStore, clockTime, pretty, errorText, ErrorBox } from '../common.js';

const MAX_ROWS = 200;

// window.__vibes.firehose appears once the view's socket first opens.
window.__vibes = window.__vibes || {};

/** The filters a query string names: {from: 'end'|'beginning'|N, types, session}. */
function readFilters(search) {
  const q = new URLSearchParams(search);
  const rawFrom = (q.get('from') || 'end').trim();
  const from = /^\d+$/.test(rawFrom) ? Number(rawFrom) : rawFrom === 'beginning' ? 'beginning' : 'end';
  const types = (q.get('types') || '').split(',').map((t) => t.trim()).filter(Boolean).join(',');
  return { from, types, session: (q.get('session') || '').trim() };
}

function queryOf(f) {
  const q = new URLSearchParams();
  q.set('from', String(f.from));
  if (f.types) q.set('types', f.types);
  if (f.session) q.set('session', f.session);
  return q.toString();
}

function typeOf(msg) {
  if (msg.error !== undefined || !msg.event) return 'undecodable';
  const ev = msg.event;
  if (ev.type === 'claude' && ev.event && ev.event.type) return `claude/${ev.event.type}`;
  return String(ev.type);
}

function toRow(msg) {
  return {
    offset: msg.offset,
    time: clockTime(msg.timestamp),
    type: typeOf(msg),
    session: (msg.event && msg.event.session_id) || '',
    msg,
  };
}

export function FirehoseView() {
  const r = useStore(route);
  const active = readFilters(r.search);
  const [form, setForm] = useState(() => formOf(active));
  const [nonce, setNonce] = useState(0);
  const [rows, setRows] = useState([]);
  const [stats, setStats] = useState({ received: 0, lastOffset: null, pending: 0 });
  const [live, setLive] = useState('connecting');
  const [problem, setProblem] = useState(null);
  const [paused, setPaused] = useState(false);
  const [expanded, setExpanded] = useState(() => new Set());
  const [formError, setFormError] = useState('');
  const pausedRef = useRef(false);
  const streamRef = useRef(null);

  useEffect(() => {
    const filters = readFilters(r.search);
    setForm(formOf(filters));
    const st = { lastOffset: null, received: 0, buffer: [], pending: 0, raf: 0 };
    streamRef.current = st;
    const exposed = { lastOffset: null, received: 0 };
    let upWhileRefused = 0;
    setRows([]);
    setStats({ received: 0, lastOffset: null, pending: 0 });
    setExpanded(new Set());
    setProblem(null);
    setLive('connecting');

    const flush = () => {
      st.raf = 0;
      if (!pausedRef.current && st.buffer.length) {
        const batch = st.buffer;
        st.buffer = [];
        setRows((old) => {
          const fresh = batch.slice(-MAX_ROWS).reverse();
          const next = fresh.length >= MAX_ROWS ? fresh : fresh.concat(old.slice(0, MAX_ROWS - fresh.length));
          return next;
        });
      }
      setStats({ received: st.received, lastOffset: st.lastOffset, pending: st.pending });
    };
    const schedule = () => {
      if (!st.raf) st.raf = requestAnimationFrame(flush);
    };
    st.flush = () => {
      if (st.raf) cancelAnimationFrame(st.raf);
      flush();
    };

    const suffix = (f) => `/ws/firehose?${queryOf({ ...filters, from: f })}`;
    const path = async () => {
      // Resume after the last offset received; the close reason may name a later one.
      let next = st.lastOffset != null ? st.lastOffset + 1 : null;
      if (st.resumeFrom != null && (next == null || st.resumeFrom > next)) next = st.resumeFrom;
      if (next == null) return suffix(filters.from);
      const status = await api('/api/status');
      const hwm = status.ok && status.data ? status.data.high_water_mark : null;
      if (typeof hwm === 'number' && hwm < next) {
        // The log is shorter than what we saw (a new data directory): go live.
        st.lastOffset = hwm > 0 ? hwm - 1 : null;
        st.resumeFrom = null;
        return suffix('end');
      }
      return suffix(next);
    };

    const sock = openSocket({
      path,
      onOpen: () => {
        window.__vibes.firehose = exposed;
        upWhileRefused = 0;
        setLive('live');
        setProblem(null);
      },
      onClose: (ev) => {
        setLive('reconnecting');
        const m = /from=(\d+)/.exec(ev.reason || '');
        if (m) st.resumeFrom = Number(m[1]);
      },
      // A refused upgrade. /api/status tells a stopped vibesd (or a 401) from
      // a running one; refused twice by a running vibesd, the same URL over
      // plain HTTP says why (a 400 for the query, a 503…).
      probe: async (target) => {
        const status = await api('/api/status');
        if (!status.ok) {
          upWhileRefused = 0;
          return;
        }
        upWhileRefused += 1;
        if (upWhileRefused < 2) return;
        const res = await api(target);
        if (!res.ok && res.status !== 0 && res.status !== 401 && res.error !== 'not_a_websocket') setProblem(res);
      },
      onMessage: (data) => {
        let msg;
        try {
          msg = JSON.parse(data);
        } catch {
          return;
        }
        if (!msg || typeof msg.offset !== 'number') return;
        if (st.lastOffset != null && msg.offset <= st.lastOffset) return;
        st.lastOffset = msg.offset;
        st.received += 1;
        exposed.lastOffset = st.lastOffset;
        exposed.received = st.received;
        if (pausedRef.current) st.pending += 1;
        st.buffer.push(toRow(msg));
        if (st.buffer.length > 2 * MAX_ROWS) st.buffer.splice(0, st.buffer.length - MAX_ROWS);
        schedule();
      },
    });
    return () => {
      if (window.__vibes.firehose === exposed) delete window.__vibes.firehose;
      sock.close();
      if (st.raf) cancelAnimationFrame(st.raf);
      st.raf = 0;
    };
  }, [r.search, nonce]);

  function togglePause() {
    const next = !pausedRef.current;
    pausedRef.current = next;
    setPaused(next);
    const st = streamRef.current;
    if (!next && st) {
      st.pending = 0;
      st.flush();
    }
  }

  function apply(ev) {
    ev.preventDefault();
    // Read the controls themselves: a change just made may not be rendered yet.
    const el = (id) => ev.currentTarget.querySelector(`[data-testid="firehose-${id}"]`);
    const now = { from: el('from').value, offset: el('offset').value, types: el('types').value, session: el('session').value };
    setForm(now);
    let from = now.from;
    if (from === 'offset') {
      if (!/^\d+$/.test(now.offset.trim())) {
        setFormError('Give an offset (a whole number) to start from.');
        return;
      }
      from = Number(now.offset.trim());
    }
    setFormError('');
    const types = now.types.split(',').map((t) => t.trim()).filter(Boolean).join(',');
    const url = `/firehose?${queryOf({ from, types, session: now.session.trim() })}`;
    if (url === location.pathname + location.search) setNonce((n) => n + 1);
    else navigate(url, { replace: true });
  }

  function toggle(offset) {
    setExpanded((old) => {
      const next = new Set(old);
      if (next.has(offset)) next.delete(offset);
      else next.add(offset);
      return next;
    });
  }

  const set = (k) => (e) => setForm((f) => ({ ...f, [k]: e.target.value }));
  return html`
    <section class="view firehose">
      <h1>Firehose</h1>
      <form class="controls" onSubmit=${apply}>
        <label>From
          <select data-testid="firehose-from" value=${form.from} onChange=${set('from')}>
            <option value="end">end</option>
            <option value="beginning">beginning</option>
            <option value="offset">offset</option>
          </select>
        </label>
        <label>Offset
          <input data-testid="firehose-offset" inputmode="numeric" size="8" value=${form.offset}
            disabled=${form.from !== 'offset'} onInput=${set('offset')} />
        </label>
        <label>Types
          <input data-testid="firehose-types" placeholder="user_input,claude" value=${form.types} onInput=${set('types')} />
        </label>
        <label>Session
          <input data-testid="firehose-session" placeholder="any" value=${form.session} onInput=${set('session')} />
        </label>
        <button type="submit" data-testid="firehose-apply">Apply</button>
        <button type="button" data-testid="firehose-pause" aria-pressed=${String(paused)} onClick=${togglePause}>
          ${paused ? 'Resume' : 'Pause'}
        </button>
      </form>
      ${formError && html`<div class="error" role="alert">${formError}</div>`}
      ${problem && html`<${ErrorBox} text=${`The firehose refused this query: ${errorText(problem)}`} />`}
      <div class="stream-stats" aria-live="off">
        <span data-testid="firehose-state" data-state=${live}>${live}</span>
        <span>received <b class="mono" data-testid="firehose-received">${stats.received}</b></span>
        <span>last offset <b class="mono" data-testid="firehose-last-offset">${stats.lastOffset == null ? '—' : stats.lastOffset}</b></span>
        <span class="muted">filters: from=${String(active.from)}${active.types ? ` types=${active.types}` : ''}${active.session ? ` session=${active.session}` : ''}</span>
        ${paused && html`<button type="button" class="pending" data-testid="firehose-pending" onClick=${togglePause}>${stats.pending} new</button>`}
      </div>
      <div class="events" data-testid="event-list">
        <div class="event-head" aria-hidden="true"><span>offset</span><span>time</span><span>type</span><span>session</span></div>
        ${rows.length === 0 ? html`<p class="muted">No events yet${active.from === 'end' ? ' (showing new events only)' : ''}.</p>` : null}
        ${rows.map((row) => html`<${EventRow} key=${row.offset} row=${row} open=${expanded.has(row.offset)} onToggle=${toggle} />`)}
      </div>
    </section>`;
}

function formOf(f) {
  const isOffset = typeof f.from === 'number';
  return { from: isOffset ? 'offset' : f.from, offset: isOffset ? String(f.from) : '', types: f.types, session: f.session };
}

// A row re-renders only when its event or its expansion changes.
class EventRow extends Component {
  shouldComponentUpdate(next) {
    return next.row !== this.props.row || next.open !== this.props.open;
  }

  render({ row, open, onToggle }) {
    const toggle = () => onToggle(row.offset);
    const key = (e) => {
      if (e.target !== e.currentTarget) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        toggle();
      }
    };
    const click = (e) => {
      if (e.target.closest('pre')) return;
      toggle();
    };
    return html`
      <div class=${`event-row${open ? ' open' : ''}`} data-testid="event-row" data-offset=${row.offset}
        tabindex="0" aria-expanded=${String(open)} onClick=${click} onKeyDown=${key}>
        <span class="mono off">${row.offset}</span>
        <span class="mono time">${row.time}</span>
        <span class=${`type${row.type === 'undecodable' ? ' error-text' : ''}`} data-field="type">${row.type}</span>
        <span class="mono session" data-field="session">${row.session}</span>
        ${open && html`<pre class="json" data-testid="event-json">${pretty(row.msg)}</pre>`}
      </div>`;
  }
}

// common.js: small shared pieces of the vibesd UI: a tiny observable store,
// the usePoll hook, formatting helpers and the inline error box.

import { html, useEffect, useReducer, useRef } from './vendor/htm-preact-standalone-3.1.1.js';

/** A value with subscribers. `set` takes a value or an updater function. */
export function createStore(initial) {
  let value = initial;
  const subs = new Set();
  return {
    get: () => value,
    set(next) {
      value = typeof next === 'function' ? next(value) : next;
      for (const fn of [...subs]) fn(value);
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

/** Re-renders the component whenever the store changes; returns its value. */
export function useStore(store) {
  const [, force] = useReducer((n) => n + 1, 0);
  const value = store.get();
  const rendered = useRef(value);
  rendered.current = value;
  useEffect(() => {
    const unsubscribe = store.subscribe(() => force());
    // A change between the render and this effect would otherwise be missed.
    if (store.get() !== rendered.current) force();
    return unsubscribe;
  }, [store]);
  return value;
}

// Set by api.js: polls wait while the token dialog is open, and start again
// (at once) when a token is accepted.
export const pollControl = createStore({ held: false, epoch: 0 });

/**
 * Calls `fn` at once, then `ms` after each call has finished (so two calls
 * never overlap), until the component unmounts. `fn` may be async.
 */
export function usePoll(fn, ms = 1000) {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const { epoch } = useStore(pollControl);
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      timer = null;
      if (stopped) return;
      if (!pollControl.get().held) {
        try {
          await fnRef.current();
        } catch (err) {
          // A bug in a view's poll function: report it, keep polling.
          console.error(err);
        }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [ms, epoch]);
}

/** Parses an RFC 3339 timestamp with any number of fraction digits. */
export function parseTime(ts) {
  if (!ts) return null;
  const trimmed = String(ts).replace(/(\.\d{3})\d+/, '$1');
  const t = Date.parse(trimmed);
  return Number.isNaN(t) ? null : t;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local HH:MM:SS.mmm. */
export function clockTime(ts) {
  const t = parseTime(ts);
  if (t == null) return '';
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local date and time, YYYY-MM-DD HH:MM:SS. */
export function dateTime(ts) {
  const t = parseTime(ts);
  if (t == null) return ts ? String(ts) : '—';
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "3d 4h", "2h 5m", "4m 10s", "12s". */
export function duration(seconds) {
  if (seconds == null || Number.isNaN(Number(seconds))) return '—';
  let s = Math.floor(Number(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${s}s`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** Microseconds as milliseconds: "0.90 ms". */
export function usToMs(us) {
  if (us == null) return '—';
  const ms = Number(us) / 1000;
  return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** A number with a fixed count of decimals, or a dash. */
export function fixed(n, digits = 2) {
  return n == null || Number.isNaN(Number(n)) ? '—' : Number(n).toFixed(digits);
}

export const show = (v) => (v == null || v === '' ? '—' : String(v));

export const enc = (s) => encodeURIComponent(String(s));

/** The text of a failed api() result: "code: detail". */
export function errorText(res) {
  if (!res) return '';
  if (res.status === 0) return `vibesd is unreachable (${res.detail || 'network error'})`;
  const code = res.error || `HTTP ${res.status}`;
  return res.detail ? `${code}: ${res.detail}` : code;
}

/** The inline error box of a view; renders nothing when `res` is empty. */
export function ErrorBox({ res, text }) {
  const msg = text || (res && !res.ok ? errorText(res) : '');
  if (!msg) return null;
  return html`<div class="error" role="alert" data-testid="error">${msg}</div>`;
}

const TONES = {
  running: 'good', up: 'good', closed: 'good', live: 'good',
  paused: 'warn', starting: 'warn', backing_off: 'warn', restarting: 'warn', half_open: 'warn', stuck: 'warn',
  failed: 'bad', down: 'bad', open: 'bad',
};

/** A coloured state badge; `tone` (good, warn, bad, info, neutral) overrides the colour. */
export function Badge({ state, testid, tone }) {
  const s = state == null ? 'none' : String(state);
  const t = tone || TONES[s] || 'neutral';
  return html`<span class=${`badge tone-${t}`} data-state=${s} data-testid=${testid}>${s}</span>`;
}

/** Pretty JSON, never throwing. */
export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// views/groups.js: the consumer groups (GET /api/groups, polled each
// second): a table with pause/resume/restart/seek per group, the seek dialog
// (dry run, then confirm) and a lag chart over the last five minutes.

import { html, useState, useRef, useEffect, useMemo } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { usePoll, ErrorBox, Badge, errorText, usToMs, fixed, show, enc } from '../common.js';
import { LineChart } from '../chart.js';

// Lag samples, kept at module level so they outlive the view: [{t, lags}].
const WINDOW_SECONDS = 300;
const samples = [];

function record(groups) {
  const t = Date.now() / 1000;
  const lags = {};
  for (const g of groups) lags[g.name] = g.lag;
  samples.push({ t, lags });
  while (samples.length && samples[0].t < t - WINDOW_SECONDS) samples.shift();
}

function chartData() {
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.lags)))].sort();
  const xs = samples.map((s) => s.t);
  const ys = names.map((n) => samples.map((s) => (s.lags[n] == null ? null : s.lags[n])));
  return { series: names.map((label) => ({ label })), data: [xs, ...ys] };
}

export function GroupsView() {
  const [groups, setGroups] = useState(null);
  const [res, setRes] = useState(null);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState({});
  const [seeking, setSeeking] = useState(null);
  const [chart, setChart] = useState(chartData);

  usePoll(async () => {
    const r = await api('/api/groups');
    setRes(r);
    if (r.ok && Array.isArray(r.data)) {
      setGroups(r.data);
      record(r.data);
      setChart(chartData());
    }
  }, 1000);

  async function act(name, action) {
    setBusy((b) => ({ ...b, [name]: action }));
    const r = await api(`/api/groups/${enc(name)}/${action}`, { method: 'POST' });
    setBusy((b) => ({ ...b, [name]: null }));
    if (r.ok) {
      const g = r.data || {};
      setResult({ ok: true, text: `${name}: ${action} done, state ${g.state || 'unknown'}` });
      if (g && g.name) setGroups((gs) => (gs || []).map((x) => (x.name === g.name ? g : x)));
    } else {
      setResult({ ok: false, text: `${name}: ${action} failed: ${errorText(r)}` });
    }
  }

  return html`
    <section class="view">
      <h1>Consumer groups</h1>
      <${ErrorBox} res=${res} />
      ${result && html`<div class=${result.ok ? 'notice' : 'error'} data-testid="action-result" role="status">${result.text}</div>`}
      ${groups == null && !res ? html`<p class="muted">Loading…</p>` : null}
      ${groups && groups.length === 0 ? html`<p class="muted">No consumer groups.</p>` : null}
      ${groups && groups.length > 0 && html`
        <div class="table-wrap">
          <table class="grid">
            <thead><tr>
              <th>group</th><th>state</th><th class="num">committed</th><th class="num">position</th>
              <th class="num">lag</th><th class="num">lag s</th><th class="num">restarts</th>
              <th class="num">dead letters</th><th class="num">p99</th><th>actions</th>
            </tr></thead>
            <tbody>
              ${groups.map((g) => html`<${GroupRow} key=${g.name} g=${g} busy=${busy[g.name]}
                onAct=${(a) => act(g.name, a)} onSeek=${() => setSeeking(g.name)} />`)}
            </tbody>
          </table>
        </div>`}
      <h2>Lag (events, last 5 minutes)</h2>
      <${LineChart} testid="lag-chart" label="lag of each group" series=${chart.series} data=${chart.data} xWindow=${WINDOW_SECONDS} />
      ${seeking && html`<${SeekDialog} name=${seeking} onClose=${() => setSeeking(null)} />`}
    </section>`;
}

function GroupRow({ g, busy, onAct, onSeek }) {
  const paused = g.state === 'paused';
  const lat = g.handler_latency || {};
  return html`
    <tr data-testid="group-row" data-group=${g.name} data-state=${g.state}>
      <td data-field="name" data-label="group"><strong>${g.name}</strong>${g.last_error ? html`<div class="small error-text" title=${g.last_error}>${g.last_error}</div>` : null}</td>
      <td data-field="state" data-label="state"><${Badge} state=${g.state} /></td>
      <td data-field="committed_offset" data-label="committed" class="num mono">${show(g.committed_offset)}</td>
      <td data-field="position" data-label="position" class="num mono">${show(g.position)}</td>
      <td data-field="lag" data-label="lag" class="num mono">${show(g.lag)}</td>
      <td data-field="lag_seconds" data-label="lag s" class="num mono">${fixed(g.lag_seconds, 1)}</td>
      <td data-field="restarts" data-label="restarts" class="num mono">${show(g.restarts)}</td>
      <td data-field="dead_letters" data-label="dead letters" class="num mono">${show(g.dead_letters)}</td>
      <td data-field="p99" data-label="p99" class="num mono">${usToMs(lat.p99_us)}</td>
      <td data-label="actions" class="actions">
        <button type="button" data-action="pause" disabled=${paused || !!busy} onClick=${() => onAct('pause')}>Pause</button>
        <button type="button" data-action="resume" disabled=${!paused || !!busy} onClick=${() => onAct('resume')}>Resume</button>
        <button type="button" data-action="restart" disabled=${!!busy} onClick=${() => onAct('restart')}>Restart</button>
        <button type="button" data-action="seek" disabled=${!!busy} onClick=${onSeek}>Seek…</button>
      </td>
    </tr>`;
}

function seekText(d) {
  return `from ${show(d.from)} to ${show(d.to)}: ${show(d.replayed)} events replayed, ${show(d.skipped)} skipped`;
}

function SeekDialog({ name, onClose }) {
  const ref = useRef(null);
  const [target, setTarget] = useState('beginning');
  const [offset, setOffset] = useState('');
  const [preview, setPreview] = useState(null);
  const [result, setResult] = useState(null);
  const [working, setWorking] = useState(false);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open && d.showModal) d.showModal();
    return () => {
      if (d && d.open) d.close();
    };
  }, []);

  const to = useMemo(() => {
    if (target !== 'offset') return target;
    if (offset === '' || !/^\d+$/.test(String(offset).trim())) return null;
    return Number(offset);
  }, [target, offset]);

  function invalidate() {
    setPreview(null);
    setResult(null);
  }

  async function run(dryRun) {
    if (to == null) return;
    setWorking(true);
    const body = dryRun ? { to, dry_run: true } : { to };
    const r = await api(`/api/groups/${enc(name)}/seek`, { body });
    setWorking(false);
    const out = r.ok ? { ok: true, text: seekText(r.data || {}) } : { ok: false, text: errorText(r) };
    if (dryRun) setPreview({ ...out, to });
    else setResult(out);
  }

  const confirmable = preview && preview.ok && preview.to === to && !working && !(result && result.ok);
  return html`
    <dialog ref=${ref} class="dialog" data-testid="seek-dialog" aria-labelledby="seek-title"
      onCancel=${(e) => { e.preventDefault(); onClose(); }}>
      <form method="dialog" onSubmit=${(e) => { e.preventDefault(); run(true); }}>
        <h2 id="seek-title">Seek ${name}</h2>
        <div class="field-row">
          <label>Target
            <select data-testid="seek-target" value=${target}
              onChange=${(e) => { setTarget(e.target.value); invalidate(); }}>
              <option value="beginning">beginning</option>
              <option value="end">end</option>
              <option value="offset">offset</option>
            </select>
          </label>
          <label>Offset
            <input data-testid="seek-offset" type="number" min="0" step="1" value=${offset}
              disabled=${target !== 'offset'}
              onInput=${(e) => { setOffset(e.target.value); invalidate(); }} />
          </label>
        </div>
        ${preview && html`<p class=${preview.ok ? 'notice' : 'error'}>${preview.ok ? 'Dry run: ' : 'Dry run refused: '}
          <span data-testid="seek-dry-run" data-ok=${String(preview.ok)}>${preview.text}</span></p>`}
        ${result && html`<p class=${result.ok ? 'notice' : 'error'}>${result.ok ? 'Moved: ' : 'Seek failed: '}
          <span data-testid="seek-result" data-ok=${String(result.ok)}>${result.text}</span></p>`}
        <div class="buttons">
          <button type="submit" data-testid="seek-preview" disabled=${to == null || working}>Preview</button>
          <button type="button" data-testid="seek-confirm" class="primary" disabled=${!confirmable}
            onClick=${() => run(false)}>Seek</button>
          <button type="button" data-testid="seek-cancel" onClick=${onClose}>${result && result.ok ? 'Close' : 'Cancel'}</button>
        </div>
      </form>
    </dialog>`;
}

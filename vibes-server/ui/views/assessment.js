// views/assessment.js: groove, the assessment plugin. The list of sessions
// (GET /api/plugins/groove/sessions, polled) and one session's timeline
// (GET /api/plugins/groove/sessions/{id}, paged with after=next_after, then
// polled for newer records): breaker, score chart, transitions, records.

import { html, useState, useRef } from '../vendor/htm-preact-standalone-3.1.1.js';
import { api } from '../api.js';
import { usePoll, ErrorBox, Badge, dateTime, fixed, show, enc, parseTime } from '../common.js';
import { LineChart } from '../chart.js';

const BASE = '/api/plugins/groove/sessions';
const MISSING = 'The assessment plugin is not part of this vibesd';
const SHOWN = 500;

function Missing() {
  return html`<p class="empty" data-testid="plugin-missing">${MISSING}.</p>`;
}

// A 404 naming no session is the route itself missing: no plugin.
const pluginMissing = (r) => r && r.status === 404 && r.error !== 'unknown_session';

export function AssessmentView() {
  const [data, setData] = useState(null);
  const [res, setRes] = useState(null);

  usePoll(async () => {
    const r = await api(BASE);
    setRes(r);
    if (r.ok && r.data) setData(r.data);
  }, 1000);

  if (pluginMissing(res)) return html`<section class="view"><h1>Assessment</h1><${Missing} /></section>`;
  const sessions = (data && data.sessions) || [];
  return html`
    <section class="view">
      <h1>Assessment</h1>
      <${ErrorBox} res=${res} />
      ${data && html`<p class="muted">Applied up to offset <span class="mono" data-field="applied_offset">${show(data.applied_offset)}</span>.</p>`}
      ${!data && !res ? html`<p class="muted">Loading…</p>` : null}
      ${data && sessions.length === 0 ? html`<p class="empty">No sessions assessed yet.</p>` : null}
      ${sessions.length > 0 && html`
        <div class="table-wrap">
          <table class="grid">
            <thead><tr>
              <th>session</th><th>breaker</th><th class="num">frustration</th><th class="num">success</th>
              <th class="num">failure score</th><th class="num">interventions</th><th class="num">checkpoints</th>
              <th class="num">signals</th><th class="num">events</th><th>last event</th>
            </tr></thead>
            <tbody>
              ${sessions.map((s) => html`
                <tr key=${s.id} data-testid="assessment-row" data-session=${s.id} data-breaker=${s.breaker}>
                  <td data-field="id" data-label="session"><a class="mono" href=${`/assessment/${enc(s.id)}`}>${s.id}</a></td>
                  <td data-field="breaker" data-label="breaker"><${Badge} state=${s.breaker} /></td>
                  <td data-field="frustration" data-label="frustration" class="num mono">${fixed(s.frustration)}</td>
                  <td data-field="success" data-label="success" class="num mono">${fixed(s.success)}</td>
                  <td data-field="failure_score" data-label="failure score" class="num mono">${fixed(s.failure_score)}</td>
                  <td data-field="interventions" data-label="interventions" class="num mono">${show(s.interventions)}</td>
                  <td data-field="checkpoints" data-label="checkpoints" class="num mono">${show(s.checkpoints)}</td>
                  <td data-field="signals" data-label="signals" class="num mono">${show(s.signals)}</td>
                  <td data-field="events" data-label="events" class="num mono">${show(s.events)}</td>
                  <td data-field="last_time" data-label="last event">${dateTime(s.last_time)}</td>
                </tr>`)}
            </tbody>
          </table>
        </div>`}
    </section>`;
}

/** Frustration and success over time: each checkpoint, then the session now. */
function scoreData(records, session) {
  const points = [];
  for (const r of records) {
    if (r.type === 'checkpoint' && r.frustration != null) points.push([parseTime(r.time), r.frustration, r.success]);
  }
  if (session && session.frustration != null) points.push([parseTime(session.last_time), session.frustration, session.success]);
  const clean = points.filter((p) => p[0] != null).sort((a, b) => a[0] - b[0]);
  return [clean.map((p) => p[0] / 1000), clean.map((p) => p[1]), clean.map((p) => p[2])];
}

const SCORE_SERIES = [{ label: 'frustration', stroke: '#ef4444' }, { label: 'success', stroke: '#10b981' }];

export function AssessmentSessionView({ id }) {
  const [session, setSession] = useState(null);
  const [records, setRecords] = useState([]);
  const [res, setRes] = useState(null);
  const [all, setAll] = useState(false);
  // The offset above which to ask next; null until the first full read.
  const after = useRef(null);

  usePoll(async () => {
    let cursor = after.current;
    const fresh = [];
    for (;;) {
      const q = `${BASE}/${enc(id)}?limit=1000${cursor != null ? `&after=${enc(cursor)}` : ''}`;
      const r = await api(q);
      setRes(r);
      if (!r.ok || !r.data) return;
      setSession(r.data.session || null);
      const page = r.data.records || [];
      fresh.push(...page);
      if (page.length) cursor = page[page.length - 1].offset;
      if (r.data.next_after == null) break;
      cursor = r.data.next_after;
    }
    after.current = cursor;
    if (fresh.length) {
      setRecords((old) => {
        const seen = new Set(old.map((x) => x.id));
        return old.concat(fresh.filter((x) => !seen.has(x.id)));
      });
    }
  }, 1000);

  const header = html`
    <nav class="crumbs" aria-label="breadcrumb"><a href="/assessment">Assessment</a> / <span class="mono">${id}</span></nav>
    <h1 class="mono break">${id}</h1>`;
  if (pluginMissing(res)) return html`<section class="view">${header}<${Missing} /></section>`;

  const transitions = records.filter((r) => r.type === 'transition');
  const interventions = records.filter((r) => r.type === 'intervention');
  const timeline = records.filter((r) => r.type === 'signal' || r.type === 'checkpoint').slice().reverse();
  const shown = all ? timeline : timeline.slice(0, SHOWN);
  const s = session || {};
  return html`
    <section class="view">
      ${header}
      <p class="links"><a href=${`/sessions/${enc(id)}`}>Messages and transcript</a>
        <a href=${`/firehose?from=beginning&session=${enc(id)}`}>Firehose of this session</a></p>
      <${ErrorBox} res=${res} text=${res && res.error === 'unknown_session' ? `groove has not assessed this session: ${res.detail || ''}` : null} />
      ${session && html`
        <dl class="summary">
          <dt>breaker</dt><dd><${Badge} state=${s.breaker} testid="breaker-state" /></dd>
          <dt>frustration</dt><dd class="mono" data-field="frustration">${fixed(s.frustration)}</dd>
          <dt>success</dt><dd class="mono" data-field="success">${fixed(s.success)}</dd>
          <dt>failure score</dt><dd class="mono" data-field="failure_score">${fixed(s.failure_score)}</dd>
          <dt>interventions</dt><dd class="mono" data-field="interventions">${show(s.interventions)}</dd>
          <dt>checkpoints</dt><dd class="mono" data-field="checkpoints">${show(s.checkpoints)}</dd>
          <dt>signals</dt><dd class="mono" data-field="signals">${show(s.signals)}</dd>
          <dt>events</dt><dd class="mono" data-field="events">${show(s.events)} (offsets ${show(s.first_offset)}–${show(s.last_offset)})</dd>
          <dt>last event</dt><dd data-field="last_time">${dateTime(s.last_time)}</dd>
        </dl>`}
      <h2>Scores over time</h2>
      <${LineChart} testid="score-chart" label="frustration and success over time" series=${SCORE_SERIES}
        data=${scoreData(records, session)} yRange=${[0, 1]} height=${200} />
      <h2>Breaker transitions <span class="muted small">${transitions.length}</span></h2>
      ${transitions.length === 0 ? html`<p class="muted">None.</p>` : html`<ul class="records">
        ${transitions.map((r) => html`<${Record} key=${r.id} r=${r} />`)}</ul>`}
      ${interventions.length > 0 && html`<h2>Interventions <span class="muted small">${interventions.length}</span></h2>
        <ul class="records">${interventions.map((r) => html`<${Record} key=${r.id} r=${r} />`)}</ul>`}
      <h2>Signals and checkpoints <span class="muted small">${timeline.length}, newest first</span></h2>
      ${timeline.length === 0 ? html`<p class="muted">None.</p>` : html`<ul class="records">
        ${shown.map((r) => html`<${Record} key=${r.id} r=${r} />`)}</ul>`}
      ${!all && timeline.length > SHOWN && html`<button type="button" onClick=${() => setAll(true)}>Show all ${timeline.length}</button>`}
    </section>`;
}

const counts = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k} ${v}`).join(', ');

function Record({ r }) {
  let body;
  if (r.type === 'signal') {
    body = html`<b>${r.kind}</b>${r.tool ? html` <span class="mono">${r.tool}</span>` : null}: ${r.detail}
      <span class="muted">(${fixed(r.confidence)})</span>${r.excerpt ? html` <q>${r.excerpt}</q>` : null}`;
  } else if (r.type === 'transition') {
    body = html`<${Badge} state=${r.from} /> → <${Badge} state=${r.to} /> <span class="muted">score ${fixed(r.failure_score)}</span>: ${r.reason}`;
  } else if (r.type === 'checkpoint') {
    body = html`<b>checkpoint</b> ${r.trigger}: offsets ${r.from_offset}–${r.to_offset}, ${r.events} events,
      frustration ${fixed(r.frustration)}, success ${fixed(r.success)}, breaker ${r.breaker}
      ${Object.keys(r.signals || {}).length ? html`<div class="muted">signals: ${counts(r.signals)}</div>` : null}
      ${Object.keys(r.failures_by_tool || {}).length ? html`<div class="muted">failures: ${counts(r.failures_by_tool)}</div>` : null}
      ${(r.snippets || []).map((sn) => html`<div class="snippet-line"><span class="mono muted">@${sn.offset}</span> ${sn.kind}: <q>${sn.text}</q></div>`)}`;
  } else if (r.type === 'intervention') {
    body = html`<b>intervention</b> for the Open at ${r.open_offset}: <span class="note">${r.note}</span>`;
  } else {
    body = html`<code>${JSON.stringify(r)}</code>`;
  }
  return html`
    <li class=${`record record-${r.type}`} data-testid="assessment-record" data-type=${r.type} data-id=${r.id} data-offset=${r.offset}>
      <span class="mono muted off">${r.offset}</span> <time class="muted" datetime=${r.time}>${dateTime(r.time)}</time> ${body}
    </li>`;
}

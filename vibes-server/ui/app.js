// app.js: the vibesd web UI's entry point. The shell (top bar, nav,
// connection indicator, theme toggle), the token dialog, toasts, `g`
// shortcuts, and the view for the current route.

import { html, render, useEffect, useRef, useState } from './vendor/htm-preact-standalone-3.1.1.js';
import { useStore } from './common.js';
import { auth, connection, submitToken, dismissTokenDialog, openTokenDialog } from './api.js';
import { route, navigate, startRouter } from './router.js';
import { notifications, toasts, dismissToast, startNotifications } from './notify.js';
import { GroupsView } from './views/groups.js';
import { FirehoseView } from './views/firehose.js';
import { ActorsView } from './views/actors.js';
import { DeadLettersView } from './views/dead-letters.js';
import { SessionsView, SearchView } from './views/sessions.js';
import { SessionView } from './views/session.js';
import { AssessmentView, AssessmentSessionView } from './views/assessment.js';
import { StatusView } from './views/status.js';
import { NotificationsView } from './views/notifications.js';
import { PermissionsView } from './views/permissions.js';
import { permissions, startPermissions } from './permissions.js';

// ---- theme ---------------------------------------------------------------

const THEME_KEY = 'vibesd.theme';
const systemDark = () => typeof matchMedia === 'function' && matchMedia('(prefers-color-scheme: dark)').matches;

function storedTheme() {
  let t = null;
  try {
    t = localStorage.getItem(THEME_KEY);
  } catch {
    t = null;
  }
  return t === 'light' || t === 'dark' ? t : 'auto';
}

function applyTheme(choice) {
  document.documentElement.setAttribute('data-theme', choice);
}

/** auto → the opposite of the system's scheme → the other one → auto. */
function nextTheme(choice) {
  const opposite = systemDark() ? 'light' : 'dark';
  const same = opposite === 'light' ? 'dark' : 'light';
  return choice === 'auto' ? opposite : choice === opposite ? same : 'auto';
}

applyTheme(storedTheme());

function ThemeToggle() {
  const [choice, setChoice] = useState(storedTheme);
  const toggle = () => {
    const next = nextTheme(choice);
    try {
      localStorage.setItem(THEME_KEY, next);
    } catch {
      // Storage unavailable: the choice lasts for this page.
    }
    applyTheme(next);
    setChoice(next);
  };
  return html`<button type="button" class="theme-toggle" data-testid="theme-toggle" data-theme-choice=${choice}
    aria-label=${`Colour theme: ${choice}. Change it.`} title="Colour theme (auto follows the system)" onClick=${toggle}>
    ${choice === 'dark' ? '☾ dark' : choice === 'light' ? '☀ light' : '◐ auto'}</button>`;
}

// ---- shell ---------------------------------------------------------------

const NAV = [
  ['groups', 'Groups', ['groups']],
  ['firehose', 'Firehose', ['firehose']],
  ['actors', 'Actors', ['actors']],
  ['dead-letters', 'Dead letters', ['dead-letters']],
  ['sessions', 'Sessions', ['sessions', 'session', 'search']],
  ['assessment', 'Assessment', ['assessment', 'assessment-session']],
  ['status', 'Status', ['status']],
  ['permissions', 'Permissions', ['permissions', 'permission']],
  ['notifications', 'Notifications', ['notifications']],
];

const Bell = () => html`<svg class="bell" viewBox="0 0 24 24" width="14" height="14" aria-hidden="true" focusable="false">
  <path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"/></svg>`;

function Nav({ view }) {
  const { unread } = useStore(notifications);
  const { pending } = useStore(permissions);
  const ref = useRef(null);
  // On a narrow screen the nav scrolls sideways: keep the current view in sight.
  useEffect(() => {
    const a = ref.current && ref.current.querySelector('[aria-current="page"]');
    if (a && a.scrollIntoView && ref.current.scrollWidth > ref.current.clientWidth) a.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }, [view]);
  return html`
    <nav class="nav" aria-label="views" ref=${ref}>
      <ul>
        ${NAV.map(([name, label, views]) => html`
          <li key=${name}>
            <a data-testid=${`nav-${name}`} href=${`/${name}`} aria-current=${views.includes(view) ? 'page' : undefined}>
              ${name === 'notifications' ? html`<${Bell} /> ` : null}${label}
              ${name === 'notifications' ? html` <span class=${`count${unread ? ' unread' : ''}`} data-testid="notifications-count"
                aria-label=${`${unread} unread`}>${unread}</span>` : null}
              ${name === 'permissions' && pending ? html` <span class="count unread" data-testid="permissions-count"
                aria-label=${`${pending} waiting`}>${pending}</span>` : null}
            </a>
          </li>`)}
      </ul>
    </nav>`;
}

const CONNECTION_TEXT = { online: 'online', connecting: 'connecting…', offline: 'offline — reconnecting…' };

function Connection() {
  const state = useStore(connection);
  return html`<span class=${`connection ${state}`} data-testid="connection" data-state=${state} role="status">
    <span class="dot" aria-hidden="true"></span>${CONNECTION_TEXT[state] || state}</span>`;
}

function TokenDialog() {
  const a = useStore(auth);
  return a.open ? html`<${TokenForm} refused=${a.refused} />` : null;
}

function TokenForm({ refused }) {
  const ref = useRef(null);
  const input = useRef(null);
  const [value, setValue] = useState('');
  const [checking, setChecking] = useState(false);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open && d.showModal) d.showModal();
    if (input.current) input.current.focus();
    return () => {
      if (d && d.open) d.close();
    };
  }, []);

  async function submit(e) {
    e.preventDefault();
    const typed = input.current ? input.current.value : value;
    if (!typed.trim() || checking) return;
    setChecking(true);
    const ok = await submitToken(typed);
    if (!ok) {
      setChecking(false);
      if (input.current) input.current.select();
    }
  }

  return html`
    <dialog ref=${ref} class="dialog" data-testid="token-dialog" aria-labelledby="token-title"
      onCancel=${(e) => { e.preventDefault(); dismissTokenDialog(); }}>
      <form method="dialog" onSubmit=${submit}>
        <h2 id="token-title">vibesd needs its token</h2>
        <p class="muted">Beyond loopback every route asks for the bearer token: the <code>token</code> of the config,
          or the one in <code>${'<data-dir>/token'}</code>. It is kept in this browser's local storage.</p>
        <label>Token
          <input ref=${input} data-testid="token-input" type="password" autocomplete="current-password"
            value=${value} onInput=${(e) => setValue(e.target.value)} />
        </label>
        ${refused && html`<p class="error" data-testid="token-error" role="alert">The token was refused: it is not this vibesd's.</p>`}
        <div class="buttons">
          <button type="submit" class="primary" data-testid="token-submit" disabled=${checking}>${checking ? 'Checking…' : 'Use token'}</button>
          <button type="button" data-testid="token-cancel" onClick=${dismissTokenDialog}>Not now</button>
        </div>
      </form>
    </dialog>`;
}

function Toasts() {
  const list = useStore(toasts);
  return html`
    <div class="toasts" aria-live="polite">
      ${list.map((t) => html`
        <div key=${t.id} class=${`toast kind-${t.n.kind}`} data-testid="toast" data-kind=${t.n.kind} data-offset=${t.n.offset}>
          <a href=${t.link} onClick=${() => dismissToast(t.id)}><strong>${t.n.title || t.n.kind}</strong>
            ${t.n.message ? html`<span class="toast-message">${t.n.message}</span>` : null}</a>
          <button type="button" class="close" aria-label="Dismiss" onClick=${() => dismissToast(t.id)}>×</button>
        </div>`)}
    </div>`;
}

function NotFound({ path }) {
  return html`<section class="view" data-testid="not-found">
    <h1>Not found</h1>
    <p>There is no view at <code>${path}</code>. <a href="/">Go to the consumer groups.</a></p>
  </section>`;
}

const TITLES = {
  groups: 'Groups', firehose: 'Firehose', actors: 'Actors', 'dead-letters': 'Dead letters', sessions: 'Sessions',
  session: 'Session', search: 'Search', assessment: 'Assessment', 'assessment-session': 'Assessment',
  status: 'Status', notifications: 'Notifications', permissions: 'Permissions', permission: 'Permission request',
  notfound: 'Not found',
};

function View({ r }) {
  switch (r.view) {
    case 'groups': return html`<${GroupsView} />`;
    case 'firehose': return html`<${FirehoseView} />`;
    case 'actors': return html`<${ActorsView} />`;
    case 'dead-letters': return html`<${DeadLettersView} />`;
    case 'sessions': return html`<${SessionsView} />`;
    case 'session': return html`<${SessionView} key=${r.id} id=${r.id} />`;
    case 'search': return html`<${SearchView} />`;
    case 'assessment': return html`<${AssessmentView} />`;
    case 'assessment-session': return html`<${AssessmentSessionView} key=${r.id} id=${r.id} />`;
    case 'status': return html`<${StatusView} />`;
    case 'notifications': return html`<${NotificationsView} />`;
    case 'permissions': return html`<${PermissionsView} />`;
    case 'permission': return html`<${PermissionsView} key=${r.id} offset=${r.id} />`;
    default: return html`<${NotFound} path=${r.path} />`;
  }
}

function App() {
  const r = useStore(route);
  const a = useStore(auth);
  useEffect(() => {
    document.title = `${TITLES[r.view] || 'vibesd'}${r.id ? ` ${r.id}` : ''} · vibesd`;
  }, [r.view, r.id]);
  return html`
    <a class="skip" href="#main" data-native onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>Skip to content</a>
    <header class="topbar">
      <a class="brand" href="/">vibesd</a>
      <${Nav} view=${r.view} />
      <div class="tools">
        ${a.dismissed && html`<button type="button" data-testid="token-open" onClick=${openTokenDialog}>Enter token</button>`}
        <${Connection} />
        <${ThemeToggle} />
      </div>
    </header>
    <main id="main" tabindex="-1" key=${`${r.view}:${a.epoch}`}>
      <${View} r=${r} />
    </main>
    <${TokenDialog} />
    <${Toasts} />`;
}

// ---- `g` then a letter ---------------------------------------------------

const SHORTCUTS = { g: '/groups', f: '/firehose', a: '/actors', d: '/dead-letters', s: '/sessions', x: '/assessment', t: '/status', n: '/notifications', p: '/permissions' };

function startShortcuts() {
  let armed = 0;
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (document.querySelector('dialog[open]')) return;
    const now = Date.now();
    if (armed && now - armed < 1500 && SHORTCUTS[e.key]) {
      armed = 0;
      e.preventDefault();
      navigate(SHORTCUTS[e.key]);
    } else {
      armed = e.key === 'g' ? now : 0;
    }
  });
}

startRouter();
startShortcuts();
startNotifications();
startPermissions();
render(html`<${App} />`, document.getElementById('app'));

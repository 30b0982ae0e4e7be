// router.js: client-side routing on the history API. `route` is a store of
// the current location, matched against the views' paths; `navigate()`
// pushes (or replaces) a URL; clicks on same-origin links to view paths are
// intercepted, and popstate (back/forward) updates the store.

import { createStore } from './common.js';

// Paths the server answers itself: never routed client-side.
const SERVER_PATHS = /^\/(api|ws|assets|metrics|healthz|readyz)(\/|$)/;

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** Matches a pathname to {view, id?}; view 'notfound' when nothing matches. */
export function match(pathname) {
  let p = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  if (p === '' || p === '/') return { view: 'groups' };
  const simple = ['groups', 'firehose', 'actors', 'dead-letters', 'sessions', 'search', 'assessment', 'status', 'notifications', 'permissions'];
  const parts = p.slice(1).split('/');
  if (parts.length === 1 && simple.includes(parts[0])) return { view: parts[0] };
  if (parts.length === 2 && parts[0] === 'permissions' && /^\d+$/.test(parts[1])) return { view: 'permission', id: parts[1] };
  if (parts.length === 2 && (parts[0] === 'sessions' || parts[0] === 'assessment') && parts[1] !== '') {
    const id = decode(parts[1]);
    if (id != null) return { view: parts[0] === 'sessions' ? 'session' : 'assessment-session', id };
  }
  return { view: 'notfound' };
}

function current() {
  const { pathname, search } = location;
  return { path: pathname, search, query: new URLSearchParams(search), ...match(pathname) };
}

export const route = createStore(current());

/** Goes to `url` (a path with an optional query); `replace` keeps history as is. */
export function navigate(url, { replace = false } = {}) {
  const before = location.pathname + location.search;
  if (url === before && !replace) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  const changedPath = route.get().path !== location.pathname;
  route.set(current());
  if (changedPath && !replace) window.scrollTo(0, 0);
}

/** Starts listening for back/forward and link clicks. */
export function startRouter() {
  window.addEventListener('popstate', () => route.set(current()));
  document.addEventListener('click', (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target.closest && ev.target.closest('a[href]');
    if (!a || a.hasAttribute('download') || a.dataset.native !== undefined) return;
    if (a.target && a.target !== '_self') return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || SERVER_PATHS.test(url.pathname)) return;
    ev.preventDefault();
    navigate(url.pathname + url.search);
  });
}

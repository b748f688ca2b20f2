/*
 * The field app's service worker: the app shell is cached so that /field opens with no signal, and the last
 * answers of the task list, catalogue and zones are kept for the page to show offline. Network first for
 * everything (an update is seen at once when online), the cache when the network fails. Writes (POST) are
 * never touched here: the page's IndexedDB outbox owns them.
 */
'use strict';

const SHELL = 'field-shell-v5';
const DATA = 'field-data';
const SHELL_FILES = [
  '/field',
  '/field/assets/field.js',
  '/field/assets/field.css',
  '/field/assets/zh-CN.json',
  '/field/assets/en.json',
  '/field/assets/icon.svg',
  '/field/manifest.webmanifest',
];
const DATA_PATHS = ['/api/v1/me/tasks', '/api/v1/rules/catalogue', '/api/v1/rules/zones'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('field-shell-') && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function networkFirst(request, cacheName, cacheKey) {
  try {
    const answer = await fetch(request);
    if (answer.ok) {
      const cache = await caches.open(cacheName);
      await cache.put(cacheKey, answer.clone());
    }
    return answer;
  } catch (err) {
    const kept = await caches.match(cacheKey);
    if (kept) return kept;
    throw err;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate' && (url.pathname === '/field' || url.pathname.startsWith('/field/'))) {
    // Every page of the app is the same shell (/field/place/<code> included).
    event.respondWith(networkFirst(request, SHELL, '/field'));
  } else if (SHELL_FILES.includes(url.pathname)) {
    event.respondWith(networkFirst(request, SHELL, url.pathname));
  } else if (DATA_PATHS.includes(url.pathname)) {
    event.respondWith(networkFirst(request, DATA, url.pathname + url.search));
  }
});

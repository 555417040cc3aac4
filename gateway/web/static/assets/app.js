// callgate console: plain JavaScript, no framework, no network but
// callgate's own API. Russian by default, English on request.
'use strict';

const texts = {
  ru: {
    'nav.calls': 'Звонки', logout: 'Выйти',
    'login.user': 'Сотрудник или добавочный', 'login.password': 'Пароль', 'login.submit': 'Войти',
    'login.bad': 'Неверный логин или пароль', 'login.limited': 'Слишком много попыток, попробуйте позже',
    'calls.title': 'История звонков', 'calls.search': 'Поиск по номеру', 'calls.empty': 'Звонков нет',
    'col.time': 'Время', 'col.direction': 'Направление', 'col.client': 'Клиент', 'col.employees': 'Сотрудники',
    'col.duration': 'Длительность', 'col.result': 'Результат', 'col.trunk': 'Линия', 'col.recording': 'Запись',
    'dir.inbound': 'Входящий', 'dir.outbound': 'Исходящий', 'dir.internal': 'Внутренний',
    'res.answered': 'Отвечен', 'res.no-answer': 'Без ответа', 'res.busy': 'Занято', 'res.abandoned': 'Сброшен',
    'res.failed': 'Ошибка', 'res.interrupted': 'Прерван', 'res.': 'Идёт',
    download: 'Скачать', 'popup.incoming': 'Входящий звонок', 'popup.outgoing': 'Исходящий звонок',
    'popup.unknown': 'Неизвестный клиент', 'popup.talking': 'Разговор', 'popup.trunk': 'Линия',
    'popup.source': 'Источник', 'popup.company': 'Компания', 'popup.crm': 'Открыть в CRM',
    'popup.transfer': 'Перевести…', 'popup.hangup': 'Завершить', 'popup.transferTo': 'Перевести на добавочный или номер:',
    'role.employee': 'сотрудник', 'role.manager': 'руководитель', 'role.admin': 'администратор',
  },
  en: {
    'nav.calls': 'Calls', logout: 'Log out',
    'login.user': 'Employee or extension', 'login.password': 'Password', 'login.submit': 'Log in',
    'login.bad': 'Wrong login or password', 'login.limited': 'Too many attempts, try again later',
    'calls.title': 'Call history', 'calls.search': 'Search by number', 'calls.empty': 'No calls',
    'col.time': 'Time', 'col.direction': 'Direction', 'col.client': 'Client', 'col.employees': 'Employees',
    'col.duration': 'Duration', 'col.result': 'Result', 'col.trunk': 'Line', 'col.recording': 'Recording',
    'dir.inbound': 'Inbound', 'dir.outbound': 'Outbound', 'dir.internal': 'Internal',
    'res.answered': 'Answered', 'res.no-answer': 'No answer', 'res.busy': 'Busy', 'res.abandoned': 'Abandoned',
    'res.failed': 'Failed', 'res.interrupted': 'Interrupted', 'res.': 'In progress',
    download: 'Download', 'popup.incoming': 'Incoming call', 'popup.outgoing': 'Outgoing call',
    'popup.unknown': 'Unknown client', 'popup.talking': 'Talking', 'popup.trunk': 'Line',
    'popup.source': 'Source', 'popup.company': 'Company', 'popup.crm': 'Open in CRM',
    'popup.transfer': 'Transfer…', 'popup.hangup': 'Hang up', 'popup.transferTo': 'Transfer to extension or number:',
    'role.employee': 'employee', 'role.manager': 'manager', 'role.admin': 'admin',
  },
};

let lang = localStorage.getItem('lang') === 'en' ? 'en' : 'ru';
let session = null;
let events = null;
const $ = (id) => document.getElementById(id);
const t = (k) => texts[lang][k] ?? k;

function applyLang() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll('[data-tp]')) el.placeholder = t(el.dataset.tp);
  $('lang').textContent = lang === 'ru' ? 'EN' : 'RU';
  $('lang-login').textContent = lang === 'ru' ? 'English' : 'Русский';
}

function switchLang() {
  lang = lang === 'ru' ? 'en' : 'ru';
  localStorage.setItem('lang', lang);
  applyLang();
  if (session) route();
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  if (res.status !== 204) { try { data = await res.json(); } catch { data = null; } }
  return { status: res.status, data };
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

function person(id) {
  return (session && session.names && session.names[id]) || id;
}

function fmtTime(s) {
  return new Date(s).toLocaleString(lang === 'ru' ? 'ru-RU' : 'en-GB', { day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function fmtDuration(sec) {
  const s = Math.round(sec || 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function show(section) {
  for (const id of ['login', 'calls']) $(id).hidden = id !== section;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + section);
}

async function boot() {
  applyLang();
  $('lang').addEventListener('click', switchLang);
  $('lang-login').addEventListener('click', switchLang);
  $('logout').addEventListener('click', logout);
  $('login-form').addEventListener('submit', login);
  $('search').addEventListener('input', () => { clearTimeout(boot.timer); boot.timer = setTimeout(loadCalls, 250); });
  window.addEventListener('hashchange', route);
  const r = await api('GET', '/api/v1/session');
  if (r.status === 200) start(r.data); else showLogin();
}

function showLogin() {
  session = null;
  $('top').hidden = true;
  show('login');
  $('login-user').focus();
}

async function login(ev) {
  ev.preventDefault();
  $('login-error').hidden = true;
  const r = await api('POST', '/api/v1/session', { login: $('login-user').value.trim(), password: $('login-password').value });
  if (r.status !== 200) {
    $('login-error').textContent = t(r.status === 429 ? 'login.limited' : 'login.bad');
    $('login-error').hidden = false;
    return;
  }
  $('login-password').value = '';
  if ('Notification' in window && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
  start(r.data);
}

async function logout() {
  await api('DELETE', '/api/v1/session');
  if (events) events.close();
  events = null;
  $('popups').replaceChildren();
  showLogin();
}

function start(s) {
  session = s;
  $('top').hidden = false;
  $('who').textContent = `${s.name || s.employee} · ${t('role.' + s.role)}`;
  listen();
  route();
}

function route() {
  if (!session) return;
  const view = (location.hash.replace(/^#\//, '') || 'calls').split('?')[0];
  switch (view) {
    default:
      show('calls');
      loadCalls();
  }
}

async function loadCalls() {
  const q = new URLSearchParams({ limit: '100' });
  const number = $('search').value.replace(/[^\d+]/g, '');
  if (number) q.set('number', number);
  const r = await api('GET', '/api/v1/calls?' + q);
  if (r.status === 401) return showLogin();
  const list = (r.data && r.data.calls) || [];
  const rows = list.map((c) => {
    const legs = (c.legs || []).map((l) => l.employee).filter(Boolean).map(person);
    const who = legs.length ? legs.join(' → ') : (c.rung || []).map(person).join(', ');
    const dir = c.internal ? 'internal' : c.direction;
    const recs = el('td', { class: 'rec' });
    for (const l of c.legs || []) {
      if (!l.recording) continue;
      const src = `/api/v1/recordings/${encodeURIComponent(c.id)}-${l.n}`;
      recs.append(el('audio', { controls: '', preload: 'metadata', src, 'data-call': c.id }), ' ',
        el('a', { href: src, download: `${c.id}-${l.n}.wav` }, t('download')));
    }
    return el('tr', { 'data-call': c.id },
      el('td', {}, fmtTime(c.started)), el('td', {}, t('dir.' + dir)),
      el('td', { class: 'client' }, c.outside_number || c.caller || ''), el('td', {}, who),
      el('td', {}, fmtDuration(c.talk_seconds)), el('td', { class: 'result-' + (c.result || '') }, t('res.' + (c.result || ''))),
      el('td', {}, c.trunk_number || ''), recs);
  });
  $('calls-body').replaceChildren(...rows);
  $('calls-empty').hidden = rows.length > 0;
}

function listen() {
  if (events) events.close();
  events = new EventSource('/api/v1/events');
  for (const kind of ['ringing', 'answered', 'transferred', 'ended']) {
    events.addEventListener(kind, (e) => onEvent(kind, JSON.parse(e.data)));
  }
}

function onEvent(kind, d) {
  if (d.internal) return;
  if (kind === 'ringing' && d.employees.includes(session.employee)) popup(d);
  const card = $('popup-' + d.call_id);
  if (card && kind === 'answered') {
    if (d.answered_by && d.answered_by !== session.employee) card.remove();
    else card.querySelector('.state').textContent = t('popup.talking');
  }
  if (kind === 'ended') {
    if (card) card.remove();
    if (!$('calls').hidden) loadCalls();
  }
}

async function popup(d) {
  if ($('popup-' + d.call_id)) return;
  const number = d.outside_number || d.caller;
  const name = el('h3', { class: 'name' }, t('popup.unknown'));
  const facts = el('dl');
  const fact = (k, v) => { if (v) facts.append(el('dt', {}, t(k)), el('dd', {}, v)); };
  fact('popup.trunk', d.trunk_number || d.account);
  const tr = d.tracking;
  if (tr && tr.source && tr.source !== tr.number) fact('popup.source', [tr.source, tr.medium, tr.campaign].filter(Boolean).join(' / '));
  const actions = el('div', { class: 'actions' },
    el('button', { class: 'secondary', type: 'button', onclick: () => transfer(d.call_id) }, t('popup.transfer')),
    el('button', { type: 'button', onclick: () => api('DELETE', '/api/v1/calls/' + encodeURIComponent(d.call_id)) }, t('popup.hangup')));
  const card = el('div', { class: 'popup', id: 'popup-' + d.call_id },
    el('div', { class: 'state' }, t(d.direction === 'outbound' ? 'popup.outgoing' : 'popup.incoming')),
    name, el('div', { class: 'num' }, number), facts, actions);
  $('popups').append(card);
  if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
    try { new Notification(t('popup.incoming'), { body: number, tag: d.call_id }); } catch { /* not allowed here */ }
  }
  const r = await api('GET', '/api/v1/clients?phone=' + encodeURIComponent(number));
  if (r.status !== 200 || !r.data) return;
  const c = r.data;
  if (c.name) name.textContent = c.name;
  fact('popup.company', c.company);
  for (const link of c.links || []) {
    actions.prepend(el('a', { href: link.url, target: '_blank', rel: 'noopener', class: 'button secondary crm-link' }, t('popup.crm')));
  }
}

async function transfer(id) {
  const to = prompt(t('popup.transferTo'));
  if (to) await api('POST', `/api/v1/calls/${encodeURIComponent(id)}/transfer`, { to: to.trim(), mode: 'blind' });
}

document.addEventListener('DOMContentLoaded', boot);

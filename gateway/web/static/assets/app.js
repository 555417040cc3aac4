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
    'res.talking': 'Идёт разговор', 'res.ringing': 'Звонит',
    'res.failed': 'Ошибка', 'res.interrupted': 'Прерван', 'res.': 'Идёт',
    download: 'Скачать', 'popup.incoming': 'Входящий звонок', 'popup.outgoing': 'Исходящий звонок',
    'popup.unknown': 'Неизвестный клиент', 'popup.talking': 'Разговор', 'popup.trunk': 'Линия',
    'popup.source': 'Источник', 'popup.company': 'Компания', 'popup.site': 'Магазин', 'popup.deals': 'Заказы', 'popup.dealsMegaplan': 'Открытые сделки', 'popup.crm': 'Открыть в CRM',
    'popup.transfer': 'Перевести…', 'popup.hangup': 'Завершить', 'popup.transferTo': 'Добавочный или номер',
    'popup.transferNow': 'Перевести', 'popup.consult': 'С консультацией', 'popup.transferring': 'Переводим…',
    'popup.consultRinging': 'Звоним коллеге, клиент на удержании…', 'popup.consulting': 'Разговор с', 'popup.connect': 'Соединить',
    'popup.backToClient': 'Вернуться к клиенту', 'popup.transferred': 'Переведён', 'popup.transferFailed': 'Перевод не удался',
    'err.transfer_failed': 'коллега не ответил или отклонил', 'err.not_transferable': 'звонок нельзя перевести сейчас', 'err.no_consultation': 'консультация уже закончилась',
    'role.employee': 'сотрудник', 'role.manager': 'руководитель', 'role.admin': 'администратор',
    'dial.number': 'Номер клиента', 'dial.call': 'Позвонить', 'dial.line': 'линия', 'dial.ringing': 'Звоним: снимите трубку своего телефона',
    'dial.failed': 'Не удалось позвонить',
    'presence.label': 'Статус', 'presence.free': 'Свободен', 'presence.busy': 'Занят', 'presence.dinner': 'Обед', 'presence.break': 'Перерыв',
    'err.invalid_number': 'это не номер телефона', 'err.unknown_employee': 'нет такого сотрудника',
    'err.upstream_not_registered': 'линия ВАТС не зарегистрирована', 'err.bad_line': 'это не ваша линия',
    'err.no_registered_phone': 'ваш телефон не зарегистрирован', 'err.all_lines_busy': 'все ваши линии заняты',
    'err.dial_rule': 'звонки на этот номер запрещены правилами', 'err.forbidden': 'нет прав', 'err.unknown': 'ошибка сервера',
    'state.registered': 'зарегистрирована', 'state.registering': 'регистрируется', 'state.backoff': 'ошибка, повтор позже',
    'state.forbidden': 'отказ ВАТС (403)', 'state.stopped': 'остановлена',
    'nav.missed': 'Пропущенные', 'nav.stats': 'Статистика', 'nav.desks': 'Рабочее место',
    'desks.title': 'Рабочие места', 'desks.hint': 'Сядьте за общий телефон на смену: его номер будет звонить вам. С телефона: *77*ПИН, выход *77#.',
    'desks.desk': 'Место', 'desks.ext': 'Номер', 'desks.holder': 'Сейчас', 'desks.free': 'свободно',
    'desks.sit': 'Сесть сюда', 'desks.leave': 'Освободить', 'desks.empty': 'Общих рабочих мест нет',
    'desks.markPC': 'Этот ПК — здесь', 'desks.pcOff': 'Снять отметку',
    'desks.pcIs': (d) => `Этот компьютер — рабочее место «${d}»: кто входит в консоль здесь, получает его номер, а при выходе освобождает.`,
    'col.actions': 'Действия', 'dial.lineLabel': 'Линия, с которой звонить', 'admin.none': 'нет',
    'nav.admin': 'Администрирование', 'admin.title': 'Состояние системы', 'admin.phones': 'Зарегистрированные телефоны',
    'admin.address': 'Адрес', 'admin.ua': 'Устройство', 'admin.expires': 'Регистрация до', 'admin.upstream': 'Учётные записи ВАТС',
    'admin.account': 'Учётная запись', 'admin.state': 'Состояние', 'admin.lastError': 'Последняя ошибка',
    'admin.crm': 'Синхронизация с CRM', 'admin.depth': 'В очереди', 'admin.oldest': 'Старейшая', 'admin.dead': 'Отклонено',
    'admin.draining': 'Идёт остановка: новые звонки отклоняются, текущие разговоры могут завершиться',
    'admin.retry': 'Повторить отклонённые', 'admin.recordings': 'Записи разговоров', 'admin.bans': 'Блокировки',
    'admin.source': 'Источник', 'admin.user': 'Логин', 'admin.until': 'До', 'admin.unban': 'Разблокировать',
    'admin.disk': (v) => `${v.files} файлов, ${size(v.bytes, 'ru')}; свободно ${size(v.free_bytes, 'ru')}` + (v.encode_backlog ? `; ждут сжатия: ${v.encode_backlog}` : '') +
      (v.archive ? `; в очереди в архив: ${v.archive.queued}` + (v.archive.last_error ? ` (ошибка архива: ${v.archive.last_error})` : '') : ''), 'admin.off': 'Запись выключена',
    'admin.storage': (v, week) => (v.archive ? `В архиве: ${v.archive.files} файлов, ${size(v.archive.bytes, 'ru')}. ` : '') +
      `За неделю записано ${size(week, 'ru')} (${size(Math.round(week / 7), 'ru')} в день)` +
      (!v.days_left ? '' : v.days_left > 365 ? '; места на диске при таком темпе хватит больше чем на год' :
        `; места на диске при таком темпе хватит примерно на ${Math.floor(v.days_left)} дн.`),
    'admin.database': 'База данных', 'admin.db': (v) => `${v.dir}: свободно ${size(v.free_bytes, 'ru')}` +
      (v.pending_writes ? `; ${v.pending_writes} записей ждут в памяти (диск заполнен?): ${v.last_write_error || ''}` : ''),
    'missed.title': 'Пропущенные звонки', 'missed.openOnly': 'только необработанные', 'missed.empty': 'Пропущенных звонков нет',
    'col.reason': 'Причина', 'col.state': 'Состояние', 'col.employee': 'Сотрудник',
    'why.no-answer': 'Нет ответа', 'why.busy': 'Занято', 'why.abandoned': 'Клиент положил трубку', 'why.failed': 'Сбой', 'why.out-of-hours': 'Вне рабочего времени',
    'missed.open': 'Не обработан', 'missed.handled': 'Обработан', 'missed.callBack': 'Перезвонить',
    'stats.title': 'Статистика', 'stats.from': 'С', 'stats.to': 'По', 'stats.show': 'Показать', 'stats.csv': 'CSV',
    'stats.in': 'Входящие', 'stats.out': 'Исходящие', 'stats.answered': 'Отвечено', 'stats.missed': 'Пропущено',
    'chart.label': 'Звонки по дням', 'chart.calls': 'всего', 'chart.answered': 'отвечено', 'chart.missed': 'пропущено', 'chart.other': 'прочие (без ответа исходящие, внутренние)',
    'stats.talk': 'Время разговоров', 'stats.avgTalk': 'Средний разговор', 'stats.avgWait': 'Среднее ожидание',
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
    'res.talking': 'Talking now', 'res.ringing': 'Ringing',
    'res.failed': 'Failed', 'res.interrupted': 'Interrupted', 'res.': 'In progress',
    download: 'Download', 'popup.incoming': 'Incoming call', 'popup.outgoing': 'Outgoing call',
    'popup.unknown': 'Unknown client', 'popup.talking': 'Talking', 'popup.trunk': 'Line',
    'popup.source': 'Source', 'popup.company': 'Company', 'popup.site': 'Store', 'popup.deals': 'Orders', 'popup.dealsMegaplan': 'Open deals', 'popup.crm': 'Open in CRM',
    'popup.transfer': 'Transfer…', 'popup.hangup': 'Hang up', 'popup.transferTo': 'Extension or number',
    'popup.transferNow': 'Transfer', 'popup.consult': 'Consult first', 'popup.transferring': 'Transferring…',
    'popup.consultRinging': 'Calling the colleague, the client is on hold…', 'popup.consulting': 'Talking to', 'popup.connect': 'Connect',
    'popup.backToClient': 'Back to the client', 'popup.transferred': 'Transferred', 'popup.transferFailed': 'Transfer failed',
    'err.transfer_failed': 'the colleague did not answer or declined', 'err.not_transferable': 'the call cannot be transferred now', 'err.no_consultation': 'the consultation is over',
    'role.employee': 'employee', 'role.manager': 'manager', 'role.admin': 'admin',
    'dial.number': 'Client number', 'dial.call': 'Call', 'dial.line': 'line', 'dial.ringing': 'Calling: pick up your phone',
    'dial.failed': 'The call could not be placed',
    'presence.label': 'Status', 'presence.free': 'Available', 'presence.busy': 'Busy', 'presence.dinner': 'Lunch', 'presence.break': 'Break',
    'err.invalid_number': 'not a phone number', 'err.unknown_employee': 'no such employee',
    'err.upstream_not_registered': 'the VPBX line is not registered', 'err.bad_line': 'not one of your lines',
    'err.no_registered_phone': 'your phone is not registered', 'err.all_lines_busy': 'all your lines are busy',
    'err.dial_rule': 'the dial rules do not allow this number', 'err.forbidden': 'not allowed', 'err.unknown': 'server error',
    'state.registered': 'registered', 'state.registering': 'registering', 'state.backoff': 'failed, retrying later',
    'state.forbidden': 'refused by the VPBX (403)', 'state.stopped': 'stopped',
    'nav.missed': 'Missed', 'nav.stats': 'Statistics', 'nav.desks': 'Desk',
    'desks.title': 'Shared desks', 'desks.hint': 'Take a shared phone for your shift: its number rings you. On the phone: *77*PIN, log out with *77#.',
    'desks.desk': 'Desk', 'desks.ext': 'Extension', 'desks.holder': 'Now', 'desks.free': 'free',
    'desks.sit': 'Sit here', 'desks.leave': 'Leave', 'desks.empty': 'No shared desks',
    'desks.markPC': 'This PC is here', 'desks.pcOff': 'Remove the mark',
    'desks.pcIs': (d) => `This computer is the "${d}" desk: whoever logs into the console here takes its extension and frees it on logging out.`,
    'col.actions': 'Actions', 'dial.lineLabel': 'Line to call from', 'admin.none': 'none',
    'nav.admin': 'Admin', 'admin.title': 'System state', 'admin.phones': 'Registered phones',
    'admin.address': 'Address', 'admin.ua': 'Device', 'admin.expires': 'Registered until', 'admin.upstream': 'VPBX accounts',
    'admin.account': 'Account', 'admin.state': 'State', 'admin.lastError': 'Last error',
    'admin.crm': 'CRM sync', 'admin.depth': 'Queued', 'admin.oldest': 'Oldest', 'admin.dead': 'Refused',
    'admin.draining': 'Stopping: new calls are refused, calls in progress may finish',
    'admin.retry': 'Retry refused', 'admin.recordings': 'Call recordings', 'admin.bans': 'Security bans',
    'admin.source': 'Source', 'admin.user': 'Login', 'admin.until': 'Until', 'admin.unban': 'Unban',
    'admin.disk': (v) => `${v.files} files, ${size(v.bytes, 'en')}; ${size(v.free_bytes, 'en')} free` + (v.encode_backlog ? `; ${v.encode_backlog} waiting to be compressed` : '') +
      (v.archive ? `; ${v.archive.queued} waiting for the archive` + (v.archive.last_error ? ` (archive error: ${v.archive.last_error})` : '') : ''), 'admin.off': 'Recording is off',
    'admin.storage': (v, week) => (v.archive ? `Archive: ${v.archive.files} files, ${size(v.archive.bytes, 'en')}. ` : '') +
      `Recorded in the last 7 days: ${size(week, 'en')} (${size(Math.round(week / 7), 'en')} a day)` +
      (!v.days_left ? '' : v.days_left > 365 ? '; at this rate the disk lasts more than a year' :
        `; at this rate the disk lasts about ${Math.floor(v.days_left)} more days`),
    'admin.database': 'Database', 'admin.db': (v) => `${v.dir}: ${size(v.free_bytes, 'en')} free` +
      (v.pending_writes ? `; ${v.pending_writes} writes wait in memory (disk full?): ${v.last_write_error || ''}` : ''),
    'missed.title': 'Missed calls', 'missed.openOnly': 'open only', 'missed.empty': 'No missed calls',
    'col.reason': 'Reason', 'col.state': 'State', 'col.employee': 'Employee',
    'why.no-answer': 'No answer', 'why.busy': 'Busy', 'why.abandoned': 'Caller hung up while ringing', 'why.failed': 'Failed', 'why.out-of-hours': 'Out of hours',
    'missed.open': 'Open', 'missed.handled': 'Handled', 'missed.callBack': 'Call back',
    'stats.title': 'Statistics', 'stats.from': 'From', 'stats.to': 'To', 'stats.show': 'Show', 'stats.csv': 'CSV',
    'stats.in': 'Inbound', 'stats.out': 'Outbound', 'stats.answered': 'Answered', 'stats.missed': 'Missed',
    'chart.label': 'Calls per day', 'chart.calls': 'total', 'chart.answered': 'answered', 'chart.missed': 'missed', 'chart.other': 'other (unanswered outbound, internal)',
    'stats.talk': 'Talk time', 'stats.avgTalk': 'Average talk', 'stats.avgWait': 'Average wait',
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
  for (const el of document.querySelectorAll('[data-ta]')) el.setAttribute('aria-label', t(el.dataset.ta));
  $('lang').textContent = lang === 'ru' ? 'EN' : 'RU';
  $('lang-login').textContent = lang === 'ru' ? 'English' : 'Русский';
}

function switchLang() {
  lang = lang === 'ru' ? 'en' : 'ru';
  localStorage.setItem('lang', lang);
  applyLang();
  if (window.phoneRelabel) window.phoneRelabel();
  if (session) {
    labels();
    route();
  }
}

// labels writes the session's texts that depend on the language.
function labels() {
  $('who').textContent = `${session.name || session.employee} · ${t('role.' + session.role)}`;
  const lines = session.extensions || [];
  const chosen = $('dial-line').value;
  $('dial-line').replaceChildren(...lines.map((x) => el('option', { value: x }, `${t('dial.line')} ${x}`)));
  if (chosen) $('dial-line').value = chosen;
  $('dial-line').hidden = lines.length < 2;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { status: 0, data: null }; // callgate unreachable (restarting)
  }
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
  // English by the month's name: "03/12" reads as March to some.
  return new Date(s).toLocaleString(lang === 'ru' ? 'ru-RU' : 'en-GB', { day: '2-digit', month: lang === 'ru' ? '2-digit' : 'short', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function fmtDuration(sec) {
  const s = Math.round(sec || 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function show(section) {
  for (const id of ['login', 'calls', 'missed', 'stats', 'desks', 'admin']) $(id).hidden = id !== section;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.id === 'nav-' + section);
}

async function boot() {
  applyLang();
  $('lang').addEventListener('click', switchLang);
  $('lang-login').addEventListener('click', switchLang);
  $('logout').addEventListener('click', logout);
  $('presence').addEventListener('change', setPresence);
  $('login-form').addEventListener('submit', login);
  $('missed-open').addEventListener('change', loadMissed);
  $('dial-form').addEventListener('submit', (e) => { e.preventDefault(); dial($('dial-number').value); });
  $('stats-form').addEventListener('submit', (e) => { e.preventDefault(); loadStats(); });
  $('desk-pc-off').addEventListener('click', () => markPC(''));
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
  if (window.phoneStop) await window.phoneStop();
  await api('DELETE', '/api/v1/session');
  if (events) events.close();
  events = null;
  $('popups').replaceChildren();
  showLogin();
}

function start(s) {
  session = s;
  // The office's today, not the browser's: days are counted in its zone.
  $('stats-to').value = s.today;
  $('stats-from').value = s.today.slice(0, 8) + '01';
  $('top').hidden = false;
  $('nav-admin').hidden = s.role !== 'admin';
  // The phone first: its registration should not wait behind the page's
  // first lists.
  if (window.phoneStart) window.phoneStart();
  labels();
  registerTel();
  listen();
  route();
  // Desks only where there are some: nothing to ask about otherwise.
  $('nav-desks').hidden = !s.desks;
  api('GET', '/api/v1/presence').then((r) => { if (r.status === 200) $('presence').value = r.data.status; });
}

// setPresence sends the status chosen in the header: while it is not
// "free", inbound calls pass this employee by (and the CRM is told).
async function setPresence() {
  const r = await api('PUT', '/api/v1/presence', { status: $('presence').value });
  if (r.status === 200) $('presence').value = r.data.status;
}

// adminTimer refreshes the admin page while it is shown: an admin watching
// it during a stop or an outage sees the state change without reloading.
let adminTimer = null;

function route() {
  clearInterval(adminTimer);
  if (!session) return;
  const [view, query] = (location.hash.replace(/^#\//, '') || 'calls').split('?');
  switch (view) {
    case 'dial': {
      // A tel: link opened through the console's protocol handler.
      const number = (new URLSearchParams(query || '').get('number') || '').replace(/^tel:/i, '');
      history.replaceState(null, '', '#/calls');
      show('calls');
      loadCalls();
      if (number) { $('dial-number').value = number; dial(number); }
      break;
    }
    case 'missed':
      show('missed');
      loadMissed();
      break;
    case 'stats':
      show('stats');
      loadStats();
      break;
    case 'desks':
      show('desks');
      loadDesks();
      break;
    case 'admin':
      if (session.role !== 'admin') { // not theirs: their calls instead, without asking the API
        history.replaceState(null, '', '#/calls');
        show('calls');
        loadCalls();
        break;
      }
      show('admin');
      loadAdmin();
      adminTimer = setInterval(() => { if (session) loadAdmin(); }, 5000);
      break;
    default:
      show('calls');
      loadCalls();
  }
  loadBadge();
}

// clientCell shows who the outside party was, as a CRM named them when the
// call rang, above their number.
function clientCell(c, number) {
  const td = el('td', { class: 'client' });
  if (c.client_name || c.client_company) {
    td.append(el('span', { class: 'client-name' }, c.client_name || c.client_company));
    if (c.client_name && c.client_company) td.append(el('span', { class: 'client-company' }, c.client_company));
  }
  td.append(el('span', { class: 'client-number' }, number || ''));
  return td;
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
    // A call still going on has no recording to play yet, and no result.
    const live = !c.ended;
    const result = live ? (c.answered && !c.answered.startsWith('0001-') ? 'talking' : 'ringing') : (c.result || '');
    for (const l of live ? [] : c.legs || []) {
      if (!l.recording) continue;
      const src = `/api/v1/recordings/${encodeURIComponent(c.id)}-${l.n}`;
      recs.append(el('audio', { controls: '', preload: 'none', src, 'data-call': c.id }), ' ',
        el('a', { href: src, download: '' }, t('download'))); // named by the server: .wav or .opus
    }
    return el('tr', { 'data-call': c.id },
      el('td', {}, fmtTime(c.started)), el('td', {}, t('dir.' + dir)),
      clientCell(c, c.outside_number || c.caller), el('td', {}, who),
      el('td', {}, live ? '' : fmtDuration(c.talk_seconds)), el('td', { class: 'result-' + result }, t('res.' + result)),
      el('td', {}, c.trunk_number || ''), recs);
  });
  $('calls-body').replaceChildren(...rows);
  $('calls-empty').hidden = rows.length > 0;
}

function listen() {
  if (events) events.close();
  events = new EventSource('/api/v1/events');
  // The stream drops when callgate restarts or the session ends: back to
  // the login form once the session is known to be gone.
  events.onerror = async () => {
    const r = await api('GET', '/api/v1/session');
    if (r.status === 401 && session) {
      if (events) events.close();
      events = null;
      $('popups').replaceChildren();
      showLogin();
    }
  };
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
  // Transferred to someone else: the call is no longer this employee's.
  if (card && kind === 'transferred' && d.transferred_to !== session.employee) card.remove();
  if (kind === 'ended') {
    if (card) card.remove();
    // The record is written just after the event: read it a moment later.
    setTimeout(() => {
      if (!$('calls').hidden) loadCalls();
      if (!$('missed').hidden) loadMissed();
      loadBadge();
    }, 400);
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
  const to = el('input', { class: 'transfer-to', type: 'text', placeholder: t('popup.transferTo'), hidden: '' });
  const status = el('div', { class: 'transfer-state', role: 'status' });
  const go = el('button', { type: 'button', class: 'transfer-go', hidden: '', onclick: () => transfer(d.call_id, to.value, 'blind', status) }, t('popup.transferNow'));
  const consult = el('button', { type: 'button', class: 'secondary transfer-consult', hidden: '', onclick: () => transfer(d.call_id, to.value, 'attended', status) }, t('popup.consult'));
  const actions = el('div', { class: 'actions' },
    el('button', { class: 'secondary transfer', type: 'button', onclick: () => { to.hidden = go.hidden = consult.hidden = false; to.focus(); } }, t('popup.transfer')),
    el('button', { class: 'hangup', type: 'button', onclick: () => api('DELETE', '/api/v1/calls/' + encodeURIComponent(d.call_id)) }, t('popup.hangup')),
    to, go, consult);
  const card = el('div', { class: 'popup', id: 'popup-' + d.call_id },
    el('div', { class: 'state' }, t(d.direction === 'outbound' ? 'popup.outgoing' : 'popup.incoming')),
    name, el('div', { class: 'num' }, number), facts, actions, status);
  $('popups').append(card);
  if (window.phoneAttach) window.phoneAttach(d.call_id);
  if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
    try { new Notification(t('popup.incoming'), { body: number, tag: d.call_id }); } catch { /* not allowed here */ }
  }
  const r = await api('GET', '/api/v1/clients?phone=' + encodeURIComponent(number));
  if (r.status !== 200 || !r.data) return;
  const c = r.data;
  // A customer the CRM knows only by this number (one callgate created) is
  // still an unknown client to the person answering.
  const digits = (v) => String(v || '').replace(/\D/g, '');
  if (c.name && digits(c.name) !== digits(number)) name.textContent = c.name;
  fact('popup.company', c.company);
  fact('popup.site', c.site);
  if ((c.deals || []).length) {
    facts.append(el('dt', {}, t(c.crm === 'megaplan' ? 'popup.dealsMegaplan' : 'popup.deals')), el('dd', { class: 'deals' },
      ...c.deals.flatMap((d, i) => [i ? ', ' : '', el('a', { href: d.url, target: '_blank', rel: 'noopener' }, d.title)])));
  }
  for (const link of c.links || []) {
    actions.prepend(el('a', { href: link.url, target: '_blank', rel: 'noopener', class: 'button secondary crm-link' }, t('popup.crm')));
  }
}

async function loadBadge() {
  const r = await api('GET', '/api/v1/missed?open=1');
  const n = r.status === 200 ? r.data.open : 0;
  $('missed-badge').textContent = String(n);
  $('missed-badge').hidden = n === 0;
}

async function loadMissed() {
  const r = await api('GET', '/api/v1/missed' + ($('missed-open').checked ? '?open=1' : ''));
  if (r.status === 401) return showLogin();
  const list = (r.data && r.data.missed) || [];
  const rows = list.map((m) => {
    const number = m.outside_number;
    const back = el('button', { type: 'button', class: 'secondary', onclick: () => api('POST', '/api/v1/calls', { employee: session.employee, number }) }, t('missed.callBack'));
    return el('tr', { 'data-call': m.id },
      el('td', {}, fmtTime(m.started)), clientCell(m, number), el('td', {}, (m.rung || []).map(person).join(', ')),
      el('td', { class: 'reason' }, t('why.' + (m.why || m.result))),
      el('td', { class: m.handled ? 'state-handled' : 'state-open' }, t(m.handled ? 'missed.handled' : 'missed.open')),
      el('td', {}, m.handled ? null : back));
  });
  $('missed-body').replaceChildren(...rows);
  $('missed-empty').hidden = rows.length > 0;
}

async function loadStats() {
  const q = new URLSearchParams({ from: $('stats-from').value, to: $('stats-to').value });
  $('stats-csv').href = '/api/v1/stats?' + q + '&format=csv';
  const r = await api('GET', '/api/v1/stats?' + q);
  if (r.status === 401) return showLogin();
  if (r.status !== 200) return;
  const st = r.data;
  $('stats-body').replaceChildren(...st.employees.map((e) => el('tr', { 'data-employee': e.employee },
    el('td', {}, person(e.employee)), el('td', { class: 'in' }, String(e.inbound)), el('td', { class: 'out' }, String(e.outbound)),
    el('td', { class: 'answered' }, String(e.answered)), el('td', { class: 'missed' }, String(e.missed)),
    el('td', { class: 'talk' }, fmtDuration(e.talk_seconds)), el('td', {}, fmtDuration(e.avg_talk_seconds)), el('td', {}, fmtDuration(e.avg_wait_seconds)))));
  chart(st.days);
}

// chart draws calls per day as stacked bars (answered, missed, the rest)
// over an axis of call counts, with the days in the console's language and
// a legend; each bar's figures are its tooltip and the chart's name sums
// the period up for screen readers.
function chart(days) {
  const svg = $('stats-chart');
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const w = svg.clientWidth || 1000, h = svg.clientHeight || 180, left = 34, right = 8, top = 10, bottom = 22;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.replaceChildren();
  const locale = lang === 'ru' ? 'ru-RU' : 'en-GB';
  const dayLabel = (date, opts) => new Date(date + 'T12:00:00Z').toLocaleDateString(locale, { timeZone: 'UTC', ...opts });
  const total = days.reduce((a, d) => ({ calls: a.calls + d.calls, answered: a.answered + d.answered, missed: a.missed + d.missed }), { calls: 0, answered: 0, missed: 0 });
  const name = `${t('chart.label')}: ${t('chart.calls')} ${total.calls}, ${t('chart.answered')} ${total.answered}, ${t('chart.missed')} ${total.missed}`;
  svg.setAttribute('aria-label', name);
  svg.append(mk('title', {}, name));
  // The axis: round steps up to the busiest day.
  const peak = Math.max(1, ...days.map((d) => d.calls));
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000].find((s) => peak / s <= 4) || Math.ceil(peak / 4);
  const max = Math.ceil(peak / step) * step;
  const plot = h - top - bottom;
  for (let v = 0; v <= max; v += step) {
    const y = top + plot - (v / max) * plot;
    svg.append(mk('line', { x1: left, x2: w - right, y1: y, y2: y, class: 'grid' }));
    svg.append(mk('text', { x: left - 4, y: y + 3, 'text-anchor': 'end', class: 'axis' }, String(v)));
  }
  const bw = (w - left - right) / Math.max(1, days.length);
  // Day labels: every day when they fit, else every few days.
  const every = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor((w - left - right) / 44))));
  days.forEach((d, i) => {
    let y = top + plot;
    const tip = `${dayLabel(d.date, { day: 'numeric', month: 'long' })}: ${t('chart.answered')} ${d.answered}, ${t('chart.missed')} ${d.missed}, ${t('chart.other')} ${d.calls - d.answered - d.missed}`;
    for (const [cls, n] of [['answered', d.answered], ['missed', d.missed], ['other', d.calls - d.answered - d.missed]]) {
      if (n <= 0) continue;
      const bh = (n / max) * plot;
      y -= bh;
      const r = mk('rect', { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: bh, class: cls, 'data-date': d.date });
      r.append(mk('title', {}, tip));
      svg.append(r);
    }
    if (i % every === 0) {
      svg.append(mk('text', { x: left + i * bw + bw / 2, y: h - 6, 'text-anchor': 'middle', class: 'day' }, dayLabel(d.date, { day: 'numeric', month: 'short' })));
    }
  });
  $('stats-legend').replaceChildren(...['answered', 'missed', 'other'].map((k) =>
    el('li', {}, el('span', { class: 'swatch ' + k, 'aria-hidden': 'true' }), t('chart.' + k))));
}

async function loadDesks() {
  const pc = session.desk_pc;
  const admin = session.role === 'admin';
  const r = session.desks ? await api('GET', '/api/v1/desks') : { status: 200, data: { desks: [] } };
  if (r.status !== 200) return;
  const here = r.data.desks.find((d) => d.extension === pc);
  $('desk-pc').hidden = !here;
  $('desk-pc-text').textContent = here ? texts[lang]['desks.pcIs'](here.name || here.extension) : '';
  $('desk-pc-off').hidden = !admin;
  const rows = r.data.desks.map((d) => {
    const mine = d.employee === session.employee;
    const act = el('td', {}, mine
      ? el('button', { type: 'button', class: 'secondary', onclick: () => deskAction(d.extension, 'logout') }, t('desks.leave'))
      : el('button', { type: 'button', onclick: () => deskAction(d.extension, 'login') }, t('desks.sit')));
    // An admin at a shared desk's PC marks it once; from then on a login
    // here takes the desk.
    if (admin && d.extension !== pc) {
      act.append(' ', el('button', { type: 'button', class: 'secondary mark-pc', onclick: () => markPC(d.extension) }, t('desks.markPC')));
    }
    return el('tr', { 'data-desk': d.extension },
      el('td', {}, d.name || d.extension), el('td', {}, d.extension),
      el('td', { class: 'holder' }, d.employee ? person(d.employee) : t('desks.free')), act);
  });
  $('desks-body').replaceChildren(...rows);
  $('desks-empty').hidden = rows.length > 0;
}

async function markPC(ext) {
  const r = ext ? await api('POST', `/api/v1/desks/${encodeURIComponent(ext)}/pc`) : await api('DELETE', '/api/v1/desks/pc');
  if (r.status === 200 || r.status === 204) session.desk_pc = ext;
  loadDesks();
}

async function deskAction(ext, what) {
  await api('POST', `/api/v1/desks/${encodeURIComponent(ext)}/${what}`);
  loadDesks();
}

// size writes a number of bytes the way people read it, in the console's
// language: 512 KB, 3.4 MB, 71.6 GB.
function size(n, l) {
  const units = l === 'ru' ? ['Б', 'КБ', 'МБ', 'ГБ', 'ТБ'] : ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  const v = i === 0 ? String(n) : n.toLocaleString(l === 'ru' ? 'ru-RU' : 'en-US', { maximumFractionDigits: 1 });
  return `${v} ${units[i]}`;
}

// errorText is a server error in the console's language: by its code when
// the console knows it, else a generic text (never the server's English).
function errorText(r) {
  const code = r && r.data && r.data.error && r.data.error.code;
  return texts[lang]['err.' + code] ?? t('err.unknown');
}

// crmName is a CRM's name as its users know it.
function crmName(n) {
  return { retailcrm: 'RetailCRM', megaplan: lang === 'ru' ? 'Мегаплан' : 'Megaplan' }[n] || n;
}

// fill puts rows in a table's body, or one row saying there are none.
function fill(body, rows) {
  const cols = body.closest('table').querySelectorAll('thead th').length;
  body.replaceChildren(...(rows.length ? rows : [el('tr', { class: 'none' }, el('td', { colspan: String(cols), class: 'empty' }, t('admin.none')))]));
}

async function loadAdmin() {
  const r = await api('GET', '/api/v1/admin');
  if (r.status !== 200) return;
  const a = r.data;
  const td = (v, cls) => el('td', cls ? { class: cls } : {}, v == null ? '' : String(v));
  $('admin-draining').hidden = !a.draining;
  $('admin-draining').textContent = a.draining ? t('admin.draining') : '';
  fill($('admin-phones'), a.phones.map((p) => el('tr', { 'data-ext': p.extension },
    td(p.extension), td(p.employee ? person(p.employee) : ''), td(`${p.source} (${p.transport})`), td(p.user_agent), td(fmtTime(p.expires)))));
  fill($('admin-upstream'), a.upstream.map((u) => el('tr', { 'data-account': u.account },
    el('td', {}, u.account), el('td', { class: 'state', 'data-state': u.state }, texts[lang]['state.' + u.state] ?? u.state), td(u.target), td(u.last_error))));
  fill($('admin-crm'), Object.entries(a.crm).map(([name, c]) => el('tr', { 'data-crm': name },
    td(crmName(name)), td(c.depth, 'depth'), td(c.depth ? fmtDuration(c.oldest_age_ns / 1e9) : ''), td(c.dead_letters, 'dead'), td(c.last_error),
    el('td', {}, c.dead_letters ? el('button', { type: 'button', class: 'secondary', onclick: async () => { await api('POST', `/api/v1/crm/${name}/retry`); loadAdmin(); } }, t('admin.retry')) : null))));
  const d = a.recordings;
  $('admin-disk').textContent = d.enabled ? texts[lang]['admin.disk'](d) : t('admin.off');
  $('admin-disk').classList.toggle('error', Boolean(d.archive && d.archive.last_error));
  $('admin-storage').textContent = d.enabled ? texts[lang]['admin.storage'](d, (d.week || []).reduce((n, day) => n + day.bytes, 0)) : '';
  $('admin-db').textContent = texts[lang]['admin.db'](a.store);
  $('admin-db').classList.toggle('error', a.store.pending_writes > 0);
  fill($('admin-bans'), a.bans.map((b) => el('tr', { 'data-source': b.source },
    td(b.source), td(b.user), td(fmtTime(b.until)),
    el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: async () => { await api('POST', '/api/v1/admin/unban', { source: b.source }); loadAdmin(); } }, t('admin.unban'))))));
}

// registerTel makes the console the browser's handler for tel: links, so a
// phone number clicked in any CRM page dials through callgate.
function registerTel() {
  try {
    navigator.registerProtocolHandler('tel', location.origin + '/#/dial?number=%s');
    document.body.dataset.telHandler = 'registered';
  } catch (e) {
    document.body.dataset.telHandler = 'refused';
  }
}

async function dial(number) {
  if (window.phoneDial && await window.phoneDial(number)) return;
  const body = { employee: session.employee, number: number.trim() };
  if (!$('dial-line').hidden) body.line = $('dial-line').value;
  const r = await api('POST', '/api/v1/calls', body);
  $('dial-state').textContent = r.status === 201 ? t('dial.ringing') : `${t('dial.failed')}: ${errorText(r)}`;
}

// transfer moves a call from its card: blind (the request returns once
// the target answered), or attended (a consultation with the target, then
// Connect or Back to the client). status is the card's line saying how it
// goes.
async function transfer(id, to, mode, status) {
  to = to.trim();
  if (!to) return;
  const path = `/api/v1/calls/${encodeURIComponent(id)}/transfer`;
  status.replaceChildren(t(mode === 'blind' ? 'popup.transferring' : 'popup.consultRinging'));
  const r = await api('POST', path, { to, mode });
  if (r.status !== 200) return status.replaceChildren(`${t('popup.transferFailed')}: ${errorText(r)}`);
  if (mode === 'blind') return status.replaceChildren(t('popup.transferred'));
  const step = (what) => async () => {
    const done = await api('POST', `${path}/${what}`);
    status.replaceChildren(done.status === 200 ? '' : `${t('popup.transferFailed')}: ${errorText(done)}`);
  };
  status.replaceChildren(t('popup.consulting') + ' ' + to + ' ',
    el('button', { type: 'button', class: 'transfer-complete', onclick: step('complete') }, t('popup.connect')),
    el('button', { type: 'button', class: 'secondary transfer-cancel', onclick: step('cancel') }, t('popup.backToClient')));
}

document.addEventListener('DOMContentLoaded', boot);

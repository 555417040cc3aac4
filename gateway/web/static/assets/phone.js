// The console's phone: SIP over WebSocket to callgate's /sip with SIP.js
// (embedded, loaded only once the phone is switched on) and the call's
// audio over WebRTC. It registers as one of the employee's lines (the
// first, or the one chosen beside the switch), with a password callgate
// mints for this console session, so it rings beside the desk phone and
// counts as that line.

const phoneTexts = {
  ru: {
    'phone.toggle': 'Телефон в браузере', 'phone.line': 'линия', 'phone.ready': 'телефон готов', 'phone.connecting': 'подключение…',
    'phone.failed': 'телефон не подключён', 'phone.noMic': 'нет доступа к микрофону',
    'phone.insecure': 'телефон в браузере работает только по https: попросите администратора включить TLS', 'phone.unavailable': 'телефон в браузере недоступен в этой сборке',
    'phone.calling': 'Вызов…', 'phone.talking': 'Разговор', 'phone.hangup': 'Положить трубку', 'phone.keypad': 'Тоновый набор',
    'popup.answer': 'Ответить', 'popup.decline': 'Отклонить', 'popup.hold': 'Удержать', 'popup.resume': 'Продолжить',
  },
  en: {
    'phone.toggle': 'Phone in the browser', 'phone.line': 'line', 'phone.ready': 'phone ready', 'phone.connecting': 'connecting…',
    'phone.failed': 'phone not connected', 'phone.noMic': 'no access to the microphone',
    'phone.insecure': 'the browser phone needs https: ask the administrator to turn TLS on', 'phone.unavailable': 'the browser phone is not in this build',
    'phone.calling': 'Calling…', 'phone.talking': 'Talking', 'phone.hangup': 'Hang up', 'phone.keypad': 'Keypad',
    'popup.answer': 'Answer', 'popup.decline': 'Decline', 'popup.hold': 'Hold', 'popup.resume': 'Resume',
  },
};
Object.assign(texts.ru, phoneTexts.ru);
Object.assign(texts.en, phoneTexts.en);

const phone = { lastError: '', busyRefused: 0, reconnects: 0, retry: null, sip: null, ua: null, registerer: null, refresh: null, ready: false, ringing: new Map(), live: new Map(), outgoing: null, state: '' };

function setState(key, detail) {
  phone.state = key;
  phone.detail = detail;
  $('phone-state').textContent = key ? t(key) + (detail ? ': ' + detail : '') : '';
  $('phone-state').dataset.state = key;
}

// phoneRelabel writes the phone's texts again in the console's language.
window.phoneRelabel = () => {
  setState(phone.state, phone.detail);
  for (const id of [...phone.ringing.keys(), ...phone.live.keys()]) controls(id);
  if (phone.relabelDial) phone.relabelDial();
};

function remember(on) {
  if (session) localStorage.setItem('phone:' + session.employee, on ? '1' : '');
}

// loadSIP imports SIP.js once; a browser whose phone was on last time
// starts at once, while the console still asks who is logged in.
let sipjs = null;
function loadSIP() {
  sipjs = sipjs || import('/assets/vendor/sip.js/sip.min.js');
  return sipjs;
}
if (Object.keys(localStorage).some((k) => k.startsWith('phone:') && localStorage.getItem(k) === '1')) {
  loadSIP().catch(() => {});
}

async function enable() {
  // Browsers give the microphone to https pages (and localhost) only.
  if (!window.isSecureContext || !navigator.mediaDevices) {
    setState('phone.insecure');
    $('phone-on').checked = false;
    return;
  }
  setState('phone.connecting');
  performance.mark('phone:enable');
  // SIP.js, the session's password and the microphone's permission, at
  // once. The microphone is asked for now, when the employee switches the
  // phone on, not when a call rings; it is released at once (the
  // permission stays with the page) and opened again for each call, as it
  // starts ringing (openEarly) or is dialled.
  const marked = (name, p) => p.finally(() => performance.mark('phone:' + name));
  const [sip, r, mic] = await Promise.allSettled([marked('sipjs', loadSIP()), marked('pass', mintPass()), marked('mic', micAllowed())]);
  performance.mark('phone:ready-to-register');
  if (sip.status !== 'fulfilled') {
    setState('phone.unavailable');
    $('phone-on').checked = false;
    return;
  }
  phone.sip = sip.value;
  if (r.value.status !== 200) {
    setState('phone.failed', errorText(r.value));
    return;
  }
  if (mic.status !== 'fulfilled') {
    setState('phone.noMic', String(mic.reason && mic.reason.message || mic.reason));
    $('phone-on').checked = false;
    return;
  }
  const p = r.value.data;
  showLines(p.lines || [], p.extension);
  const { UserAgent, Registerer } = phone.sip;
  const ua = phone.ua = new UserAgent({
    uri: UserAgent.makeURI(p.uri),
    transportOptions: { server: p.ws_url },
    authorizationUsername: p.username,
    authorizationPassword: p.password,
    userAgentString: 'callgate console',
    logLevel: 'error',
    // callgate is ICE-lite at a known address and answers the browser's
    // checks from wherever they come: the browser need not wait long for
    // its own candidates before it sends its SDP.
    sessionDescriptionHandlerFactoryOptions: { peerConnectionConfiguration: { iceServers: [] }, iceGatheringTimeout: 20 },
    sessionDescriptionHandlerFactory: (session, options) => phone.sip.Web.defaultSessionDescriptionHandlerFactory(microphoneFor(session))(session, options),
    delegate: {
      onInvite: incoming,
      // A connection lost without being asked to (a network drop, a
      // proxy's reload) is made again, with a fresh password.
      onDisconnect: (error) => {
        phone.ready = false;
        setState('phone.failed');
        if (error) reconnect(ua, p.extension, 0);
      },
      // Connected again: register again. The registerer may still think
      // itself registered, so the answer, not its state, says ready.
      onConnect: () => {
        if (!phone.registerer) return;
        phone.registerer.register({
          requestDelegate: {
            onAccept: () => { phone.ready = true; setState('phone.ready'); },
            onReject: () => setState('phone.failed'),
          },
        }).catch(() => {});
      },
    },
  });
  try {
    await phone.ua.start();
    performance.mark('phone:connected');
    phone.registerer = new Registerer(phone.ua, { expires: 300 });
    phone.registerer.stateChange.addListener((s) => {
      phone.ready = s === 'Registered';
      if (phone.ready) performance.mark('phone:registered');
      setState(phone.ready ? 'phone.ready' : 'phone.failed');
    });
    await phone.registerer.register();
  } catch (e) {
    setState('phone.failed', String(e && e.message || e));
    return;
  }
  // The password is good for a while only: a fresh one before it runs out.
  phone.refresh = setInterval(async () => {
    const again = await api('POST', '/api/v1/phone', { extension: p.extension });
    if (again.status === 200 && phone.ua) phone.ua.configuration.authorizationPassword = again.data.password;
  }, (p.refresh_seconds || 1200) * 1000);
}

// The line the phone registers, chosen beside the switch when the
// employee has more than one; remembered per employee in this browser.
const lineKey = () => 'phone-line:' + session.employee;

// mintPass asks for the session's password on the chosen line, or the
// first when the chosen one is no longer the employee's.
async function mintPass() {
  const line = localStorage.getItem(lineKey()) || '';
  const r = await api('POST', '/api/v1/phone', line ? { extension: line } : undefined);
  if (r.status !== 403 || !r.data || !r.data.error || r.data.error.code !== 'not_your_line') return r;
  localStorage.removeItem(lineKey());
  return api('POST', '/api/v1/phone');
}

function showLines(lines, current) {
  const sel = $('phone-line');
  sel.replaceChildren(...lines.map((l) => el('option', { value: l }, l)));
  sel.value = current;
  $('phone-line-label').hidden = lines.length < 2;
}

// micAllowed asks for the microphone unless the page has it already, and
// lets it go at once: the light stays off until a call.
async function micAllowed() {
  try {
    if ((await navigator.permissions.query({ name: 'microphone' })).state === 'granted') return;
  } catch { /* no Permissions API for the microphone here: ask */ }
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  for (const tr of mic.getTracks()) tr.stop();
}

// A ringing call's microphone is opened as it starts ringing, so that
// answering does not wait for it; SIP.js takes it through microphoneFor.
const early = new WeakMap();

function openEarly(inv) {
  const mic = navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  mic.catch(() => {}); // reported when the call takes it
  early.set(inv, mic);
}

// releaseEarly lets go of a microphone opened for a call that ended
// before it was answered.
function releaseEarly(inv) {
  const mic = early.get(inv);
  early.delete(inv);
  if (mic) mic.then((m) => m.getTracks().forEach((tr) => tr.stop()), () => {});
}

// microphoneFor is SIP.js's media stream factory for one call. An answer
// (or an offer) need not wait for the microphone to open, which takes tens
// of milliseconds and a few hundred the first time in a browser's life:
// when it is not open yet, the call starts with a silent track, ICE and
// DTLS come up meanwhile, and the microphone replaces the silence on the
// same sender, without renegotiation, as soon as it is there.
function microphoneFor(session) {
  return (constraints, sdh) => {
    const mic = early.get(session) || navigator.mediaDevices.getUserMedia(constraints);
    early.delete(session);
    if (!sdh || !constraints.audio || constraints.video) return mic;
    const soon = new Promise((resolve) => setTimeout(resolve, 5, null));
    return Promise.race([mic, soon]).then((m) => {
      if (m) return m;
      mic.then((real) => {
        if (sdh.peerConnection) sdh.setLocalMediaStream(real).catch(() => real.getTracks().forEach((tr) => tr.stop()));
        else real.getTracks().forEach((tr) => tr.stop()); // the call ended first
      }, (e) => setState('phone.noMic', String(e && e.message || e)));
      return silence();
    });
  };
}

// silence is a silent audio stream, the stand-in for a microphone that
// is still opening. Chromium makes one without its audio service (which
// an AudioContext would wait for, synchronously, the first time).
let audioContext = null;
function silence() {
  if (window.MediaStreamTrackGenerator) return new MediaStream([new MediaStreamTrackGenerator({ kind: 'audio' })]);
  audioContext = audioContext || new AudioContext();
  return audioContext.createMediaStreamDestination().stream;
}

// reconnect connects ua again after a lost connection, waiting 1, 2, 4…
// up to 30 s between tries, while it is still the phone's and switched on.
// A console whose session is gone stops here: logging in again starts the
// phone anew.
function reconnect(ua, extension, attempt) {
  clearTimeout(phone.retry);
  phone.retry = setTimeout(async () => {
    if (phone.ua !== ua || !$('phone-on').checked) return;
    setState('phone.connecting');
    const again = await api('POST', '/api/v1/phone', { extension });
    if (phone.ua !== ua) return;
    if (again.status === 200) ua.configuration.authorizationPassword = again.data.password;
    else if (again.status === 401 || again.status === 403) return setState('phone.failed');
    try {
      await ua.reconnect();
      phone.reconnects++;
    } catch {
      setState('phone.failed');
      reconnect(ua, extension, attempt + 1);
    }
  }, Math.min(30000, 1000 * 2 ** attempt));
}

async function disable() {
  clearTimeout(phone.retry);
  clearInterval(phone.refresh);
  phone.ready = false;
  const ua = phone.ua;
  phone.ua = phone.registerer = null;
  if (ua) {
    try { await ua.stop(); } catch { /* already gone */ }
  }
  $('phone-line-label').hidden = true;
  setState('');
}

// A call ringing the browser: its card (the live events' popup for the
// same call) gets Answer and Decline; without a card one is made.
function incoming(inv) {
  // A line carries one call: while this one talks (or holds), another
  // call is refused busy and rings the employee's other phones.
  if (phone.live.size || phone.outgoing) {
    phone.busyRefused++;
    inv.reject({ statusCode: 486, reasonPhrase: 'Busy Here' }).catch(() => {});
    return;
  }
  const id = inv.request.getHeader('X-Callgate-Call') || inv.request.callId;
  phone.ringing.set(id, inv);
  openEarly(inv);
  inv.stateChange.addListener((s) => {
    if (s === 'Established') {
      phone.ringing.delete(id);
      phone.live.set(id, inv);
      play(inv);
      controls(id);
    }
    if (s === 'Terminated') {
      phone.ringing.delete(id);
      phone.live.delete(id);
      releaseEarly(inv);
      controls(id);
    }
  });
  if ($('popup-' + id)) controls(id);
  else setTimeout(() => { if (!$('popup-' + id) && phone.ringing.has(id)) ownCard(id, inv); }, 800);
}

// ownCard is the phone's card for a call the console has no live events
// of (a colleague's internal call): only the phone can act on it, and it
// goes when the call ends.
function ownCard(id, inv) {
  popup({ call_id: id, direction: 'inbound', outside_number: inv.remoteIdentity.uri.user, employees: [] });
  const card = $('popup-' + id);
  if (!card) return;
  card.dataset.phone = '1';
  for (const x of card.querySelectorAll('.actions > :not(.phone-btn)')) x.hidden = true;
  inv.stateChange.addListener((s) => { if (s === 'Terminated') card.remove(); });
}

// controls puts the browser phone's buttons on a call's card.
function controls(id) {
  const card = $('popup-' + id);
  if (!card) return;
  for (const b of card.querySelectorAll('.phone-btn')) b.remove();
  const actions = card.querySelector('.actions');
  const ringing = phone.ringing.get(id);
  const live = phone.live.get(id);
  if (ringing) {
    actions.prepend(
      el('button', { type: 'button', class: 'phone-btn answer', onclick: () => answer(ringing) }, t('popup.answer')),
      el('button', { type: 'button', class: 'phone-btn secondary decline', onclick: () => ringing.reject().catch(() => {}) }, t('popup.decline')));
  } else if (live) {
    const held = !!live.callgateHeld;
    actions.prepend(el('button', { type: 'button', class: 'phone-btn secondary hold', onclick: () => hold(live, () => controls(id)) }, t(held ? 'popup.resume' : 'popup.hold')), keypad(live));
    if (card.dataset.phone) actions.prepend(el('button', { type: 'button', class: 'phone-btn hangup-phone', onclick: () => live.bye().catch(() => {}) }, t('popup.hangup')));
  }
}

// keypad is a field whose digits go down the call as tones (RFC 4733):
// an IVR's menu, an extension after a greeting.
function keypad(s) {
  return el('input', {
    type: 'text', class: 'phone-btn phone-dtmf', inputmode: 'tel', autocomplete: 'off', size: '8',
    placeholder: t('phone.keypad'), 'aria-label': t('phone.keypad'),
    oninput: (e) => {
      const f = e.target;
      const tones = (e.data || '').replace(/[^0-9*#]/g, '');
      if (tones) sendTones(s, tones);
      f.value = f.value.replace(/[^0-9*#]/g, '');
    },
  });
}

// sendTones queues tones on the call's DTMF sender (after any still
// playing); false when the call cannot carry them.
function sendTones(s, tones) {
  const pc = s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
  const sender = pc && pc.getSenders().find((x) => x.dtmf);
  if (!sender || !sender.dtmf.canInsertDTMF) {
    phone.lastError = 'DTMF: the call cannot carry tones';
    return false;
  }
  sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + tones, 120, 70);
  return true;
}

function answer(inv) {
  inv.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } }).catch(() => {});
}

// hold puts call s on hold, or takes it off; then calls after.
async function hold(s, after) {
  const on = !s.callgateHeld;
  s.sessionDescriptionHandlerOptionsReInvite = { hold: on };
  try {
    await s.invite({
      requestDelegate: {
        onAccept: () => { s.callgateHeld = on; after(); },
        onReject: (r) => { phone.lastError = `re-INVITE ${r.message.statusCode}`; },
      },
    });
  } catch (e) {
    phone.lastError = String(e && e.message || e); // the call goes on as it was
  }
}

// play sends the call's audio to the page's audio element (which also
// feeds WebAudio: Chromium needs the element for a remote stream).
function play(s) {
  const audio = $('phone-audio');
  audio.srcObject = s.sessionDescriptionHandler.remoteMediaStream;
  audio.play().catch(() => {});
}

// dial places a call from the browser phone; false when it is off, and
// the click-to-call box then rings the employee's phones through the API.
async function dial(number) {
  if (!phone.ready) return false;
  const { Inviter, UserAgent } = phone.sip;
  const digits = number.replace(/[^\d+*#]/g, '');
  const target = UserAgent.makeURI(`sip:${encodeURIComponent(digits)}@${location.hostname}`);
  if (!digits || !target) return false;
  const inv = new Inviter(phone.ua, target, { sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } });
  phone.outgoing = inv;
  const state = $('dial-state');
  const hang = el('button', { type: 'button', class: 'phone-btn secondary', id: 'phone-hangup', onclick: () => (inv.state === 'Established' ? inv.bye() : inv.cancel()).catch(() => {}) }, t('phone.hangup'));
  state.replaceChildren(t('phone.calling'), ' ', hang);
  inv.stateChange.addListener((s) => {
    if (s === 'Established') {
      play(inv);
      const talking = () => {
        hang.textContent = t('phone.hangup');
        const held = el('button', { type: 'button', class: 'phone-btn secondary hold', onclick: () => hold(inv, talking) }, t(inv.callgateHeld ? 'popup.resume' : 'popup.hold'));
        state.replaceChildren(t('phone.talking'), ' ', hang, ' ', held, ' ', keypad(inv));
      };
      phone.relabelDial = talking;
      talking();
    }
    if (s === 'Terminated') {
      phone.outgoing = null;
      phone.relabelDial = null;
      state.replaceChildren();
    }
  });
  inv.invite().catch(() => state.replaceChildren(t('dial.failed')));
  return true;
}

// callgatePhone is the phone's state for diagnostics (and the console's
// browser tests): registration and the media of the call in progress.
window.callgatePhone = {
  state: () => phone.state,
  lastError: () => phone.lastError || '',
  // connection is the call's peer connection state ('' without a call).
  connection() {
    const s = phone.outgoing || [...phone.live.values(), ...phone.ringing.values()][0];
    const pc = s && s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
    return pc ? pc.connectionState : '';
  },
  ready: () => phone.ready,
  // busyRefused counts calls refused because the phone was in a call.
  busyRefused: () => phone.busyRefused,
  // reconnects counts connections made again after one was lost.
  reconnects: () => phone.reconnects,
  async stats() {
    const s = phone.outgoing || [...phone.live.values()][0];
    const pc = s && s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
    if (!pc) return null;
    const out = { codecs: [], dtls: '', srtp: '', connection: pc.connectionState };
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'codec') out.codecs.push(r.mimeType);
      if (r.type === 'transport') { out.dtls = r.dtlsState; out.srtp = r.srtpCipher || ''; }
    });
    return out;
  },
};

window.phoneAttach = controls;
window.phoneDial = dial;
window.phoneStart = () => {
  $('phone-on').checked = localStorage.getItem('phone:' + session.employee) === '1';
  if ($('phone-on').checked) enable();
};
window.phoneStop = disable;

// Another line: the phone registers again, as that line.
$('phone-line').addEventListener('change', async () => {
  localStorage.setItem(lineKey(), $('phone-line').value);
  if (!$('phone-on').checked) return;
  await disable();
  $('phone-on').checked = true;
  enable();
});

$('phone-on').addEventListener('change', () => {
  remember($('phone-on').checked);
  if ($('phone-on').checked) enable(); else disable();
});

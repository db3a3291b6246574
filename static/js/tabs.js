// Tab sharing: one connection per browser per stream and transport.
// STUB: every tab holds its own connection (role 'alone'); the real leader
// election lands next. The interface is the one in the JS seam:
//   shareConnection(key, open, {share}) -> handle
//   handle.onevent / onstatus / ontransport / onnotice / onrole, handle.close()
(function () {
  'use strict';

  function shareConnection(key, open, options) {
    const handle = {close: close};
    const latest = {};
    let closeConnection = null;
    let closed = false;

    // Handlers may be assigned after we return: keep the latest value of each
    // kind of state and hand it over when the handler arrives.
    for (const name of ['status', 'transport', 'role']) {
      let handler = null;
      Object.defineProperty(handle, 'on' + name, {
        get: function () { return handler; },
        set: function (fn) {
          handler = fn;
          if (fn && name in latest) fn(latest[name]);
        },
      });
    }
    handle.onevent = null;
    handle.onnotice = null;

    function show(name, value) {
      if (closed && name !== 'status') return;
      latest[name] = value;
      const handler = handle['on' + name];
      if (handler) handler(value);
    }

    const emit = {
      event: function (ev) { if (!closed && handle.onevent) handle.onevent(ev); },
      status: function (s) { show('status', s); },
      transport: function (t) { show('transport', t); },
      notice: function (text) { if (!closed && handle.onnotice) handle.onnotice(text); },
    };

    function close() {
      if (closed) return;
      if (closeConnection) closeConnection();
      show('status', 'closed');
      closed = true;
    }

    show('role', 'alone');
    closeConnection = open('', emit);
    return handle;
  }

  window.shareConnection = shareConnection;
})();

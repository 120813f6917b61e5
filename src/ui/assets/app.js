// sectl dashboard: the only script. Replaces the live region with what the server
// sends (server-sent events), keeping the keyboard focus, and sends action forms with
// fetch so the page never reloads. Without it the pages still work (forms post and
// the server redirects back); only the live updates need it.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var status = document.getElementById('status');
  if (live && live.dataset.stream && window.EventSource) {
    var es = new EventSource(live.dataset.stream);
    es.addEventListener('update', function (e) {
      var focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : '';
      live.innerHTML = e.data;
      live.dataset.updates = String((Number(live.dataset.updates) || 0) + 1);
      if (focused) {
        var el = document.getElementById(focused);
        if (el) { el.focus(); }
      }
    });
    es.onerror = function () {
      // Closed for good (the session ended, or the server refused): the page reloads
      // and the server sends the login form if need be.
      if (es.readyState === 2) { window.location.reload(); }
    };
  }
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form.hasAttribute('data-js') || !window.fetch) { return; }
    ev.preventDefault();
    var data = new FormData(form);
    // The button pressed says what to do (check or start).
    if (ev.submitter && ev.submitter.name) { data.append(ev.submitter.name, ev.submitter.value); }
    var body = new URLSearchParams(data);
    var button = ev.submitter || form.querySelector('button');
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: 'POST',
      body: body,
      headers: { 'Accept': 'application/json' },
      credentials: 'same-origin'
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, j: j }; });
    }).then(function (x) {
      status.textContent = x.j.message || (x.ok ? 'Done.' : 'Failed.');
      status.className = x.ok ? 'ok' : 'error';
    }).catch(function (e) {
      status.textContent = 'The request failed: ' + e;
      status.className = 'error';
    }).then(function () {
      if (button && document.body.contains(button)) { button.disabled = false; }
    });
  });
})();

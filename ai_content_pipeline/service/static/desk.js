// aicp review desk: live job progress (the job's event stream), the review buttons (the JSON
// API) and the keyboard: j/k next/previous take, Space play/pause, a approve, r reject.
// Plain JavaScript, no library and no build step.
(function () {
  "use strict";
  var FINAL = ["completed", "partial", "failed", "cancelled"];
  var STREAMS = 4, streams = 0;

  function announce(text) {
    var live = document.getElementById("announce");
    if (live) { live.textContent = ""; window.setTimeout(function () { live.textContent = text; }, 30); }
  }

  // -- live progress: each [data-live][data-job] follows its job's events ----------------------
  function follow(el) {
    var id = el.getAttribute("data-job"), timer = null, source;
    function refresh() {
      timer = null;
      fetch("/api/v1/generate/" + id + "?records_limit=0", {headers: {Accept: "application/json"}})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (!job) { return; }
          var p = job.progress || {}, pct = Math.round((p.percent || 0) * 10) / 10;
          var status = el.querySelector("[data-status]"), bar = el.querySelector("[data-progress]");
          var percent = el.querySelector("[data-percent]"), counts = el.querySelector("[data-counts]");
          if (status) { status.textContent = job.status; status.className = "status status-" + job.status; }
          if (bar) { bar.value = pct; bar.textContent = pct + "%"; }
          if (percent) { percent.textContent = pct; }
          if (counts) {
            counts.textContent = (p.completed || 0) + (p.total != null ? "/" + p.total : "") + " records" +
              (p.failed ? ", " + p.failed + " failed" : "");
          }
          if (FINAL.indexOf(job.status) >= 0) {
            if (source) { source.close(); }
            el.removeAttribute("data-live");
            announce((job.name || "job") + " " + job.status);
            if (el.hasAttribute("data-reload")) { window.location.reload(); }
          }
        })
        .catch(function () {});
    }
    function soon() { if (!timer) { timer = window.setTimeout(refresh, 250); } }
    // the server lets one client hold a few event streams (--max-streams, 8): the first
    // STREAMS jobs follow theirs, the others ask for their status every few seconds
    if (window.EventSource && streams < STREAMS) {
      streams += 1;
      source = new EventSource("/api/v1/generate/" + id + "/events");
      source.onmessage = soon;
      source.onerror = function () {
        if (source.readyState === 2) { source = {close: function () {}}; poll(); }  // refused: poll
        soon();
      };
    } else {
      poll();
    }
    function poll() {
      var every = window.setInterval(function () {
        if (!el.hasAttribute("data-live")) { window.clearInterval(every); return; }
        refresh();
      }, 3000);
    }
    refresh();
  }

  // -- the cards -------------------------------------------------------------------------------
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("article.take")); }
  var current = null;

  function currentCard() {
    var active = document.activeElement, card = active && active.closest ? active.closest("article.take") : null;
    if (card) { current = card; }
    if (current && !document.body.contains(current)) {
      current = document.getElementById(current.id);
    }
    return current || cards()[0] || null;
  }

  function focusCard(card) {
    if (!card) { return; }
    current = card;
    card.focus();
    card.scrollIntoView({block: "nearest"});
  }

  function reload(card, focus) {
    return fetch(card.getAttribute("data-url"), {headers: {Accept: "text/html"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return card; }
        var box = document.createElement("div");
        box.innerHTML = html.trim();
        var fresh = box.firstElementChild;
        card.replaceWith(fresh);
        if (focus) { focusCard(fresh); }
        if (fresh.hasAttribute("data-pending")) { watch(fresh); }
        return fresh;
      });
  }

  // a card whose new take is on its way asks again until it has landed
  function watch(card) {
    window.setTimeout(function () {
      if (!document.body.contains(card)) { return; }
      var had = document.activeElement && card.contains(document.activeElement);
      reload(card, had).then(function (fresh) {
        if (fresh && !fresh.hasAttribute("data-pending")) {
          announce("Take " + (Number(fresh.getAttribute("data-index")) + 1) + ": the new take has landed");
        }
      });
    }, 1500);
  }

  function problem(card, text) {
    var p = card.querySelector("[data-problem]");
    if (p) { p.textContent = text; }
  }

  function act(card, action) {
    var api = card.getAttribute("data-api"), n = Number(card.getAttribute("data-index")) + 1, url, body;
    if (action === "approve" || action === "reject") {
      var reason = card.querySelector("[data-reason]");
      url = api + "/review";
      body = {decision: action === "approve" ? "approved" : "rejected", note: action === "reject" && reason && reason.value ? reason.value : null};
    } else if (action === "regenerate") {
      url = api + "/regenerate"; body = {};
    } else if (action === "edit") {
      url = api + "/edit"; body = {text: card.querySelector("[data-edit]").value};
    } else { return; }
    problem(card, "");
    fetch(url, {method: "POST", headers: {"Content-Type": "application/json", Accept: "application/json"},
                body: JSON.stringify(body)})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) { return {ok: r.ok, data: data}; });
      })
      .then(function (res) {
        if (!res.ok) {
          var e = (res.data && res.data.error) || {};
          problem(card, (e.message || "the server refused") + (e.hint ? " (" + e.hint + ")" : ""));
          return;
        }
        var said = {approve: "approved", reject: "rejected", regenerate: "regenerating", edit: "re-voicing the edited text"};
        announce("Take " + n + " " + said[action]);
        return reload(card, true).then(function (fresh) {
          if ((action === "regenerate" || action === "edit") && fresh && !fresh.hasAttribute("data-pending")) {
            fresh.setAttribute("data-pending", ""); watch(fresh);
          }
        });
      })
      .catch(function () { problem(card, "the server did not answer"); });
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-action]") : null;
    if (!button) { return; }
    var card = button.closest("article.take");
    if (card) { current = card; act(card, button.getAttribute("data-action")); }
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target, tag = t && t.tagName ? t.tagName.toLowerCase() : "";
    if (tag === "input" && t.hasAttribute("data-reason") && ev.key === "Enter") {
      ev.preventDefault();
      act(t.closest("article.take"), "reject");
      return;
    }
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) { return; }
    var list = cards();
    if (!list.length) { return; }
    var card = currentCard(), i = list.indexOf(card);
    if (ev.key === "j") { ev.preventDefault(); focusCard(list[Math.min(i + 1, list.length - 1)] || list[0]); }
    else if (ev.key === "k") { ev.preventDefault(); focusCard(list[Math.max(i - 1, 0)]); }
    else if (ev.key === " " && ["button", "a", "summary", "audio", "video"].indexOf(tag) < 0) {
      var audio = card && card.querySelector("audio.take-audio");
      if (audio) {
        ev.preventDefault();
        if (audio.paused) {
          cards().forEach(function (c) { var a = c.querySelector("audio"); if (a && a !== audio) { a.pause(); } });
          audio.play();
        } else { audio.pause(); }
      }
    }
    else if (ev.key === "a" && card) { ev.preventDefault(); act(card, "approve"); }
    else if (ev.key === "r" && card) {
      ev.preventDefault();
      var reason = card.querySelector("[data-reason]");
      if (reason) { reason.focus(); }
    }
  });

  // cards further down load their audio's metadata (its duration) as they come into view, so a
  // page of hundreds of takes loads as fast as one of a dozen
  function lazyAudio() {
    var later = document.querySelectorAll("audio[data-preload]");
    if (!later.length) { return; }
    function wake(a) { a.preload = a.getAttribute("data-preload"); a.removeAttribute("data-preload"); }
    if (!window.IntersectionObserver) { Array.prototype.forEach.call(later, wake); return; }
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { seen.unobserve(e.target); wake(e.target); } });
    }, {rootMargin: "600px 0px"});
    Array.prototype.forEach.call(later, function (a) { seen.observe(a); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    window.addEventListener("load", lazyAudio);
    Array.prototype.forEach.call(document.querySelectorAll("[data-live][data-job]"), follow);
    cards().forEach(function (c) { if (c.hasAttribute("data-pending")) { watch(c); } });
  });
})();

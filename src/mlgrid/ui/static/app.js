// mlgrid web UI: a little vanilla JavaScript on top of server-rendered pages.
// Live lists use server-sent events (EventSource); everything else works without script.
"use strict";

(function () {
  var MAX_ROWS = 500;
  var SUBJECT_CHARS = 48;
  var STATE_POLL_MS = 1500;
  var STATE_BATCH = 200;
  // Delivery states in the order a person reads them, with their label and badge class.
  var STATES = [
    ["delivered", "delivered", "good"],
    ["pending", "pending", "warn"],
    ["retrying", "retrying", "warn"],
    ["deadLettered", "dead letter", "bad"],
    ["dropped", "dropped", "bad"]
  ];

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function localTime(date, withDate) {
    var t = pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
    if (!withDate) return t;
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " + t;
  }

  function ago(date) {
    var s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 0) return "in " + describe(-s);
    return describe(s) + " ago";
  }

  function describe(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function isToday(date) {
    var now = new Date();
    return date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() &&
      date.getDate() === now.getDate();
  }

  // <time datetime="ISO"> → local time, with the relative time as a tooltip.
  function enhanceTimes(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var date = new Date(node.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      node.textContent = localTime(date, !isToday(date));
      node.title = node.getAttribute("datetime") + " (" + ago(date) + ")";
    }
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setState(node, state, label) {
    if (!node) return;
    node.className = "dot " + state;
    node.textContent = label;
  }

  function typeCell(type, url) {
    var td = el("td");
    var text = String(type || "");
    var cut = text.lastIndexOf(".");
    var link = el("a");
    link.href = url;
    if (cut > 0) {
      link.appendChild(el("span", "type-ns", text.slice(0, cut + 1)));
      link.appendChild(el("span", "type-name", text.slice(cut + 1)));
    } else {
      link.appendChild(el("span", "type-name", text));
    }
    td.appendChild(link);
    return td;
  }

  // The live event list at "/".
  function startLive(table) {
    var tbody = document.getElementById("live-rows");
    var empty = document.getElementById("live-empty");
    var stateNode = document.getElementById("stream-state");
    var countNode = document.getElementById("event-count");
    var notice = document.getElementById("stream-notice");
    var pauseButton = document.getElementById("pause");
    var clearButton = document.getElementById("clear");
    var paused = false;
    var ready = false;
    var held = [];

    function count() {
      countNode.textContent = String(tbody.rows.length);
      empty.classList.toggle("hidden", tbody.rows.length > 0);
    }

    function add(ev, fresh) {
      var tr = el("tr", fresh ? "fresh" : "");
      tr.setAttribute("data-seq", ev.seq);
      tr.setAttribute("data-event-id", ev.id);
      tr.setAttribute("data-event-type", ev.type);
      var date = new Date(ev.time);
      var timeCell = el("td");
      var time = el("time", "", localTime(date, true));
      time.setAttribute("datetime", ev.time);
      time.title = ev.time;
      timeCell.appendChild(time);
      tr.appendChild(timeCell);
      var topicCell = el("td", "", ev.topic);
      if (ev.topicKind === "system") topicCell.appendChild(el("span", "badge neutral small", "workspace"));
      tr.appendChild(topicCell);
      tr.appendChild(typeCell(ev.type, ev.url));
      var subject = String(ev.subject || "");
      var subjectCell = el("td", "subject",
        subject.length > SUBJECT_CHARS ? subject.slice(0, SUBJECT_CHARS - 1) + "…" : subject);
      subjectCell.title = subject;
      tr.appendChild(subjectCell);
      var deliveryCell = el("td", "delivery");
      deliveryCell.appendChild(el("span", "muted", "…"));
      tr.appendChild(deliveryCell);
      var idCell = el("td");
      var code = el("code", "small", ev.id.length > 18 ? ev.id.slice(0, 17) + "…" : ev.id);
      code.title = ev.id;
      idCell.appendChild(code);
      tr.appendChild(idCell);
      tr.addEventListener("click", function (e) {
        if (e.target.closest("a")) return;
        window.location.href = ev.url;
      });
      tbody.insertBefore(tr, tbody.firstChild);
      while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
    }

    // Delivery states change after an event is shown: ask for those not yet final.
    var statesUrl = table.getAttribute("data-states");
    var asking = false;
    function showStates(tr, counts) {
      var cell = tr.querySelector("td.delivery");
      while (cell.firstChild) cell.removeChild(cell.firstChild);
      var total = 0, open = 0, parts = [];
      STATES.forEach(function (entry) {
        var n = counts[entry[0]] || 0;
        if (!n) return;
        total += n;
        if (entry[0] === "pending" || entry[0] === "retrying") open += n;
        var badge = el("span", "badge small " + entry[2], (n > 1 ? n + " " : "") + entry[1]);
        badge.setAttribute("data-state", entry[0]);
        cell.appendChild(badge);
        parts.push(n + " " + entry[1]);
      });
      if (!total) cell.appendChild(el("span", "muted", "no subscription"));
      cell.title = total ? parts.join(", ") + " (of " + total + " deliveries)" : "No subscription matched this event";
      tr.setAttribute("data-delivery", open ? "open" : "final");
    }
    function pollStates() {
      if (asking || paused) return;
      var rows = tbody.querySelectorAll("tr:not([data-delivery=final]):not([data-delivery=hidden])");
      if (!rows.length) return;
      var query = [];
      for (var i = 0; i < rows.length && i < STATE_BATCH; i++) query.push("seq=" + rows[i].getAttribute("data-seq"));
      asking = true;
      fetch(statesUrl + "?" + query.join("&"), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : {}; })
        .then(function (answer) {
          for (var j = 0; j < rows.length && j < STATE_BATCH; j++) {
            var seq = rows[j].getAttribute("data-seq");
            if (answer[seq]) {
              showStates(rows[j], answer[seq]);
            } else {
              var cell = rows[j].querySelector("td.delivery");
              cell.textContent = "—";
              cell.title = "You may not read this topic's subscriptions, or the event is no longer retained";
              rows[j].setAttribute("data-delivery", "hidden");
            }
          }
        })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { asking = false; });
    }
    window.setInterval(pollStates, STATE_POLL_MS);

    var source = new EventSource(table.getAttribute("data-stream"));
    source.addEventListener("open", function () { if (!paused) setState(stateNode, "live", "live"); });
    source.addEventListener("error", function () {
      setState(stateNode, "down", source.readyState === 2 ? "disconnected" : "reconnecting…");
    });
    source.addEventListener("ready", function () {
      ready = true;
      if (!paused) setState(stateNode, "live", "live");
      count();
      pollStates();
    });
    source.addEventListener("event", function (message) {
      var ev = JSON.parse(message.data);
      if (paused) { held.push(ev); return; }
      add(ev, ready);
      count();
    });
    source.addEventListener("skipped", function (message) {
      var info = JSON.parse(message.data);
      notice.textContent = "Events arrive faster than this page can show them: " + info.reason + ".";
      notice.classList.remove("hidden");
    });
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
      pauseButton.textContent = paused ? "Resume" : "Pause";
      if (paused) {
        setState(stateNode, "paused", "paused");
      } else {
        setState(stateNode, "live", "live");
        held.forEach(function (ev) { add(ev, true); });
        held = [];
        count();
      }
    });
    clearButton.addEventListener("click", function () {
      while (tbody.rows.length) tbody.deleteRow(0);
      count();
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  // The viewer of a Queue subscription.
  // Server-sent events read from a POST (EventSource can only GET): consuming a queue changes
  // state, so the stream that does it is a POST started by the user.
  function postStream(url, handlers, onDown) {
    var controller = new AbortController();
    fetch(url, {method: "POST", credentials: "same-origin", signal: controller.signal,
                headers: {"Accept": "text/event-stream"}}).then(function (response) {
      if (!response.ok) { onDown(response.status + " " + response.statusText); return null; }
      if (handlers.open) handlers.open();
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { onDown("disconnected"); return null; }
          buffer += decoder.decode(chunk.value, {stream: true});
          var blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          blocks.forEach(function (block) {
            var name = "message", data = [];
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event: ") === 0) name = line.slice(7);
              else if (line.indexOf("data: ") === 0) data.push(line.slice(6));
            });
            if (data.length && handlers[name]) handlers[name]({data: data.join("\n")});
          });
          return pump();
        });
      }
      return pump();
    }).catch(function () { onDown("disconnected"); });
    return controller;
  }

  function startViewer(list) {
    var stateNode = document.getElementById("viewer-state");
    var countNode = document.getElementById("viewer-count");
    var empty = document.getElementById("viewer-empty");
    var button = document.getElementById("viewer-start");
    var ready = false;
    var controller = null;
    var handlers = {};
    function down(text) { setState(stateNode, "down", text); button.disabled = false; controller = null; }
    handlers.open = function () { setState(stateNode, "live", "live"); };
    handlers.ready = function () { ready = true; setState(stateNode, "live", "live"); };
    handlers.failure = function (message) {
      var info = JSON.parse(message.data);
      empty.textContent = info.message;
      empty.classList.add("error");
      if (controller) controller.abort();
      down(info.status + " " + info.code);
    };
    button.addEventListener("click", function () {
      if (controller) return;
      button.disabled = true;
      setState(stateNode, "connecting", "connecting…");
      controller = postStream(list.getAttribute("data-stream"), handlers, down);
    });
    handlers.event = function (message) {
      var item = JSON.parse(message.data);
      var box = el("article", ready ? "viewer-item fresh" : "viewer-item");
      box.setAttribute("data-event-id", item.id || "");
      var head = el("header");
      head.appendChild(el("strong", "", item.type));
      head.appendChild(el("code", "small", item.subject));
      head.appendChild(el("span", "muted small", "id " + item.id));
      if (item.time) {
        var time = el("time", "small muted", item.time);
        time.setAttribute("datetime", item.time);
        head.appendChild(time);
        enhanceTimes(head);
      }
      if (item.deliveryCount) head.appendChild(el("span", "badge neutral", "delivery " + item.deliveryCount));
      box.appendChild(head);
      var details = el("details");
      details.appendChild(el("summary", "small", "event"));
      details.appendChild(el("pre", "json", JSON.stringify(item.event, null, 2)));
      box.appendChild(details);
      list.insertBefore(box, list.firstChild);
      while (list.children.length > MAX_ROWS) list.removeChild(list.lastChild);
      countNode.textContent = String(list.children.length);
      empty.classList.add("hidden");
    };
    window.addEventListener("beforeunload", function () { if (controller) controller.abort(); });
  }

  function wireForms() {
    var forms = document.querySelectorAll("form[data-confirm]");
    for (var i = 0; i < forms.length; i++) {
      forms[i].addEventListener("submit", function (e) {
        if (!window.confirm(this.getAttribute("data-confirm"))) e.preventDefault();
      });
    }
    var all = document.querySelectorAll("input[data-select-all]");
    for (var j = 0; j < all.length; j++) {
      all[j].addEventListener("change", function () {
        var boxes = document.querySelectorAll('input[type=checkbox][form="' + this.getAttribute("data-select-all") + '"]');
        for (var k = 0; k < boxes.length; k++) boxes[k].checked = this.checked;
      });
    }
    var backs = document.querySelectorAll("a[data-back]");
    for (var b = 0; b < backs.length; b++) {
      backs[b].addEventListener("click", function (e) {
        if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    enhanceTimes(document);
    wireForms();
    var live = document.getElementById("live-table");
    if (live) startLive(live);
    var viewer = document.getElementById("viewer-list");
    if (viewer) startViewer(viewer);
    window.setInterval(function () { enhanceTimes(document); }, 30000);
  });
})();

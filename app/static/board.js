/* 销售机会看板 (app/templates/board/index.html, app/views/board.py).
 *
 * The page carries its data (#crm-board-data) and its translated texts
 * (#crm-board-texts); this script draws the columns, the cards and the forecast.
 * A card moves by drag and drop or by its buttons (the keyboard way):
 *   未指派 → 开发中   opens the assign dialog, then POST /api/v1/opportunity/<id>/assign
 *   开发中 → 开发成功 POST …/<id>/succeed   (a customer of that name exists: 409 + choices)
 *   开发中 → 开发失败 POST …/<id>/fail
 * — the opportunity REST resource, so the same workflow functions, permissions and
 * row rules as every other page. The session cookie authenticates; writes carry
 * the page's CSRF token in X-CSRFToken. A refused step (403/409/400: a lost race,
 * say) moves the card back, shows the server's Chinese message on it and
 * refreshes the counts. No inline handlers: the CSP allows only our own scripts.
 */
(function () {
  "use strict";
  var root = document.getElementById("crm-board");
  if (!root) { return; }
  var data = JSON.parse(document.getElementById("crm-board-data").textContent);
  var T = JSON.parse(document.getElementById("crm-board-texts").textContent);
  var csrf = root.getAttribute("data-csrf");
  var api = root.getAttribute("data-api");
  var dataUrl = root.getAttribute("data-data-url");
  var listUrl = root.getAttribute("data-list-url");
  var boardEl = root.querySelector(".crm-board");
  var live = document.getElementById("crm-board-live");
  var TARGET = {assign: "assigned", succeed: "succeeded", fail: "failed"};   // step → column
  var STEP = {assigned: "assign", succeeded: "succeed", failed: "fail"};     // column → step
  var FROM = {assign: "unassigned", succeed: "assigned", fail: "assigned"};  // step needs
  var cols = {};
  var labels = {};
  var dragging = null;
  var chart = null;

  // ---- small helpers ---------------------------------------------------------------
  function fmt(tpl, values) {
    return String(tpl).replace(/\{(\w+)\}/g, function (m, k) {
      return values[k] !== undefined && values[k] !== null ? values[k] : m;
    });
  }
  function money(text) {
    if (text === null || text === undefined) { return ""; }
    var parts = String(text).split(".");
    parts[0] = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return fmt(T.money, {amount: parts.join(".")});
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function announce(text) { if (live) { live.textContent = text; } }

  // ---- cards -----------------------------------------------------------------------
  function allowedSteps(card) {
    var may = card._data.may || {};
    return ["assign", "succeed", "fail"].filter(function (s) { return may[s]; });
  }

  function renderCard(c) {
    var li = el("li", "crm-card crm-card-" + c.status);
    li._data = c;
    li.setAttribute("data-id", c.id);
    li.setAttribute("data-status", c.status);
    li.setAttribute("aria-label", c.number + " " + c.customer_name);
    var head = el("div", "crm-card-head");
    var link = el("a", "crm-card-number", c.number);
    link.href = c.url;
    link.title = T.details;
    head.appendChild(link);
    var rate = el("span", "crm-card-rate", c.success_rate + "%");
    rate.title = T.success_rate;
    head.appendChild(rate);
    li.appendChild(head);
    li.appendChild(el("div", "crm-card-customer", c.customer_name));
    li.appendChild(el("div", "crm-card-summary", c.summary));
    var meta = el("dl", "crm-card-meta");
    function item(label, value, cls) {
      meta.appendChild(el("dt", null, label));
      var dd = el("dd", cls || null);
      if (typeof value === "string") { dd.textContent = value; } else { dd.appendChild(value); }
      meta.appendChild(dd);
    }
    item(T.assignee, c.assignee || T.unassigned, c.assignee ? null : "text-muted");
    if (c.status === "assigned") {
      if (c.next_plan_on) {
        var when = el("span", null, c.next_plan_on);
        if (c.overdue) {
          var wrap = el("span");
          wrap.appendChild(when);
          wrap.appendChild(document.createTextNode(" "));
          wrap.appendChild(el("span", "label label-danger", T.overdue));
          item(T.next_plan, wrap);
        } else {
          item(T.next_plan, when);
        }
      } else {
        item(T.next_plan, T.no_plan, "text-muted");
      }
    }
    if (c.expected_amount !== null) { item(T.amount, money(c.expected_amount)); }
    if (c.expected_close_on) { item(T.close_on, c.expected_close_on); }
    li.appendChild(meta);
    var steps = allowedSteps(li);
    if (steps.length) {
      li.draggable = true;
      li.classList.add("crm-card-movable");
      var actions = el("div", "crm-card-actions");
      steps.forEach(function (s) {
        var b = el("button", "btn btn-xs " + (s === "fail" ? "btn-default" : "btn-primary"), T[s]);
        b.type = "button";
        b.setAttribute("data-step", s);
        b.setAttribute("aria-label", T[s] + " " + c.number + " " + c.customer_name);
        actions.appendChild(b);
      });
      li.appendChild(actions);
    }
    if ((c.may || {}).update_forecast) {
      // 更新预计成交: the small form on the opportunity page (the same workflow step)
      var fc = el("a", "crm-card-forecast btn btn-link btn-xs", T.forecast);
      fc.href = c.url + "#forecast";
      fc.setAttribute("aria-label", T.forecast + " " + c.number + " " + c.customer_name);
      li.appendChild(fc);
    }
    var msg = el("div", "crm-card-msg");
    msg.setAttribute("role", "alert");
    li.appendChild(msg);
    return li;
  }

  function setMsg(card, text, kind) {
    var msg = card.querySelector(".crm-card-msg");
    msg.textContent = text || "";
    msg.className = "crm-card-msg" + (text ? " alert alert-" + (kind || "info") : "");
    if (text) { announce(text); }
    return msg;
  }

  // ---- columns and counts --------------------------------------------------------------
  function updateMore(status) {
    var c = cols[status];
    var hidden = c.total - c.list.children.length;
    c.more.hidden = hidden <= 0;
    c.more.textContent = hidden > 0 ? fmt(T.more, {n: hidden}) : "";
  }

  function setCounts(counts) {
    Object.keys(cols).forEach(function (status) {
      if (counts[status] === undefined) { return; }
      cols[status].total = counts[status];
      cols[status].count.textContent = counts[status];
      updateMore(status);
    });
  }

  function buildColumns() {
    data.columns.forEach(function (c) {
      labels[c.status] = c.label;
      var col = el("section", "crm-board-col crm-board-col-" + c.status);
      col.setAttribute("data-status", c.status);
      col.setAttribute("role", "listitem");
      var head = el("h4", "crm-board-col-head");
      head.id = "crm-col-" + c.status;
      head.appendChild(el("span", "crm-board-col-label", c.label));
      var count = el("span", "badge crm-board-count", String(c.count));
      head.appendChild(count);
      col.appendChild(head);
      var list = el("ol", "crm-board-cards");
      list.setAttribute("aria-labelledby", head.id);
      c.cards.forEach(function (card) { list.appendChild(renderCard(card)); });
      col.appendChild(list);
      var more = el("a", "crm-board-more");
      more.href = listUrl + encodeURIComponent(c.status);
      col.appendChild(more);
      boardEl.appendChild(col);
      cols[c.status] = {el: col, list: list, count: count, more: more, total: c.count};
      updateMore(c.status);
    });
  }

  // ---- forecast ----------------------------------------------------------------------
  function renderForecast(f) {
    var total = root.querySelector(".crm-forecast-total");
    total.textContent = "";
    total.appendChild(el("strong", null, T.weighted + " " + money(f.total.weighted)));
    total.appendChild(document.createTextNode(
      "（" + T.amount + " " + money(f.total.amount) + "，" + f.total.count + "）"));
    function fill(selector, rows, first) {
      var body = root.querySelector(selector + " tbody");
      body.textContent = "";
      if (!rows.length) {
        var tr = el("tr");
        var td = el("td", "text-muted", T.empty);
        td.colSpan = 4;
        tr.appendChild(td);
        body.appendChild(tr);
      }
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", null, first(r)));
        tr.appendChild(el("td", "text-right", String(r.count)));
        tr.appendChild(el("td", "text-right", money(r.amount)));
        tr.appendChild(el("td", "text-right", money(r.weighted)));
        body.appendChild(tr);
      });
    }
    fill(".crm-forecast-months", f.by_month, function (r) { return r.month || T.month_none; });
    fill(".crm-forecast-managers", f.by_manager, function (r) { return r.name; });
    root.querySelector(".crm-forecast-note").textContent =
      f.without_amount ? fmt(T.without_amount, {n: f.without_amount}) : "";
    var chartEl = document.getElementById("crm-forecast-chart");
    if (window.echarts && chartEl) {
      chartEl.hidden = !f.by_month.length;
      if (!f.by_month.length) { return; }
      chart = chart || window.echarts.init(chartEl);
      chart.setOption({
        tooltip: {trigger: "axis", valueFormatter: function (v) { return money(Number(v).toFixed(2)); }},
        grid: {left: 64, right: 16, top: 16, bottom: 28},
        xAxis: {type: "category", data: f.by_month.map(function (r) { return r.month || T.month_none; })},
        yAxis: {type: "value"},
        series: [{name: T.weighted, type: "bar", color: "#337ab7", barMaxWidth: 48,
                  data: f.by_month.map(function (r) { return Number(r.weighted); })}]
      });
    }
  }

  // ---- server calls ------------------------------------------------------------------
  function refresh(id, okText) {
    var url = dataUrl + (id ? "?id=" + encodeURIComponent(id) : "");
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r); })
      .then(function (d) {
        setCounts(d.counts);
        renderForecast(d.forecast);
        if (!id) { return null; }
        var old = boardEl.querySelector('.crm-card[data-id="' + id + '"]');
        if (!d.card) {
          if (old) { old.parentNode.removeChild(old); }
          return null;
        }
        var fresh = renderCard(d.card);
        var list = cols[d.card.status].list;
        if (old && old.parentNode === list) { list.replaceChild(fresh, old); } else {
          if (old) { old.parentNode.removeChild(old); }
          list.insertBefore(fresh, list.firstChild);
        }
        Object.keys(cols).forEach(updateMore);
        if (okText) { setMsg(fresh, okText, "success"); }
        return fresh;
      })
      .catch(function () { return null; });
  }

  function moveTo(card, status) {
    var list = cols[status].list;
    list.insertBefore(card, list.firstChild);
  }

  function okMessage(step, json) {
    if (step === "assign") { return T.assigned_ok; }
    if (step === "fail") { return T.fail_ok; }
    return fmt(json.customer_number && json.linked ? T.linked_ok : T.succeed_ok,
               {number: json.customer_number || ""});
  }

  function offerDuplicate(card, json) {
    var msg = card.querySelector(".crm-card-msg");
    var box = el("div", "crm-card-choices");
    (json.existing_customers || []).forEach(function (c) {
      var b = el("button", "btn btn-xs btn-primary",
                 fmt(T.link_to, {number: c.number, name: c.name}));
      b.type = "button";
      b.setAttribute("data-link", c.id);
      box.appendChild(b);
    });
    var again = el("button", "btn btn-xs btn-default", T.create_anyway);
    again.type = "button";
    again.setAttribute("data-create-anyway", "1");
    box.appendChild(again);
    msg.appendChild(box);
  }

  function run(card, step, body, focusAfter) {
    if (card.classList.contains("crm-card-busy")) { return; }
    var from = card.parentNode;
    var next = card.nextSibling;
    var origin = card.getAttribute("data-status");
    var id = card.getAttribute("data-id");
    card.classList.add("crm-card-busy");
    moveTo(card, TARGET[step]);
    setMsg(card, T.working, "info");
    fetch(api + encodeURIComponent(id) + "/" + step, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRFToken": csrf},
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (json) {
        return {ok: resp.ok, status: resp.status, json: json};
      });
    }).then(function (r) {
      if (r.ok) {
        if (step === "succeed") { r.json.linked = !!(body && body.link_customer_id); }
        return refresh(id, okMessage(step, r.json)).then(function (fresh) {
          if (!fresh && card.parentNode) {     // saved, but the refresh failed: say so anyway
            card.classList.remove("crm-card-busy");
            card.setAttribute("data-status", TARGET[step]);
            setMsg(card, okMessage(step, r.json), "success");
          }
          announce(fmt(T.moved, {column: labels[TARGET[step]]}));
          if (fresh && focusAfter) { fresh.querySelector(".crm-card-number").focus(); }
        });
      }
      back(card, from, next, origin);
      setMsg(card, r.json.message || ("HTTP " + r.status), "danger");
      if (r.status === 409 && r.json.existing_customers) { offerDuplicate(card, r.json); }
      if (focusAfter) { card.querySelector(".crm-card-number").focus(); }
      return refresh(null);
    }, function () {
      back(card, from, next, origin);
      setMsg(card, T.network, "danger");
    });
  }

  function back(card, from, next, origin) {
    card.classList.remove("crm-card-busy");
    if (next && next.parentNode === from) { from.insertBefore(card, next); } else { from.appendChild(card); }
    card.setAttribute("data-status", origin);
  }

  // ---- the assign dialog ---------------------------------------------------------------
  var dialog = document.getElementById("crm-assign-dialog");
  var pending = null;

  function openAssign(card, focusAfter) {
    var select = dialog.querySelector("select");
    dialog.querySelector(".crm-assign-what").textContent =
      card._data.number + " " + card._data.customer_name;
    dialog.querySelector(".crm-assign-error").textContent = "";
    select.value = "";
    pending = {card: card, opener: document.activeElement, focusAfter: focusAfter};
    dialog.showModal();
    select.focus();
  }

  dialog.querySelector("form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var select = dialog.querySelector("select");
    if (!select.value) {
      dialog.querySelector(".crm-assign-error").textContent = select.options[0].textContent;
      select.focus();
      return;
    }
    var p = pending;
    pending = null;
    dialog.close();
    if (p) { run(p.card, "assign", {assignee_id: parseInt(select.value, 10)}, p.focusAfter); }
  });
  dialog.querySelector("[data-board-cancel]").addEventListener("click", function () {
    dialog.close();
  });
  dialog.addEventListener("close", function () {
    if (pending && pending.opener && pending.opener.focus) { pending.opener.focus(); }
    pending = null;
  });

  function start(card, step, focusAfter) {
    if (card.getAttribute("data-status") !== FROM[step] || allowedSteps(card).indexOf(step) < 0) {
      setMsg(card, fmt(T.not_allowed, {why: card.getAttribute("data-status") !== FROM[step]
                                           ? T.why_status : T.why_rights}), "warning");
      return;
    }
    if (step === "assign") { openAssign(card, focusAfter); return; }
    if (!window.confirm(step === "succeed" ? T.confirm_succeed : T.confirm_fail)) { return; }
    run(card, step, {}, focusAfter);
  }

  // ---- buttons (keyboard fallback) ---------------------------------------------------
  boardEl.addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (!b) { return; }
    var card = b.closest(".crm-card");
    if (!card) { return; }
    if (b.hasAttribute("data-step")) { start(card, b.getAttribute("data-step"), true); }
    else if (b.hasAttribute("data-link")) {
      run(card, "succeed", {link_customer_id: parseInt(b.getAttribute("data-link"), 10)}, true);
    } else if (b.hasAttribute("data-create-anyway")) {
      run(card, "succeed", {create_anyway: true}, true);
    }
  });

  // ---- drag and drop -------------------------------------------------------------------
  function clearTargets() {
    Object.keys(cols).forEach(function (s) {
      cols[s].el.classList.remove("crm-drop-ok", "crm-drop-no", "crm-drop-hover");
    });
  }
  boardEl.addEventListener("dragstart", function (ev) {
    var card = ev.target.closest && ev.target.closest(".crm-card");
    if (!card || !card.draggable || card.classList.contains("crm-card-busy")) { return; }
    dragging = card;
    card.classList.add("crm-dragging");
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", card.getAttribute("data-id"));
    var steps = allowedSteps(card);
    Object.keys(cols).forEach(function (s) {
      if (s === card.getAttribute("data-status")) { return; }
      cols[s].el.classList.add(STEP[s] && steps.indexOf(STEP[s]) >= 0 ? "crm-drop-ok" : "crm-drop-no");
    });
  });
  boardEl.addEventListener("dragend", function () {
    if (dragging) { dragging.classList.remove("crm-dragging"); }
    dragging = null;
    clearTargets();
  });
  boardEl.addEventListener("dragover", function (ev) {
    var col = ev.target.closest && ev.target.closest(".crm-board-col");
    if (!dragging || !col || col.getAttribute("data-status") === dragging.getAttribute("data-status")) { return; }
    ev.preventDefault();
    ev.dataTransfer.dropEffect = col.classList.contains("crm-drop-ok") ? "move" : "none";
    Object.keys(cols).forEach(function (s) { cols[s].el.classList.toggle("crm-drop-hover", cols[s].el === col); });
  });
  boardEl.addEventListener("drop", function (ev) {
    var col = ev.target.closest && ev.target.closest(".crm-board-col");
    var card = dragging;
    if (!card || !col) { return; }
    ev.preventDefault();
    dragging = null;
    card.classList.remove("crm-dragging");
    clearTargets();
    var status = col.getAttribute("data-status");
    if (status === card.getAttribute("data-status")) { return; }
    var step = STEP[status];
    if (!step) {
      setMsg(card, fmt(T.not_allowed, {why: T.why_status}), "warning");
      return;
    }
    start(card, step, false);
  });

  buildColumns();
  renderForecast(data.forecast);
  window.addEventListener("resize", function () { if (chart) { chart.resize(); } });
})();

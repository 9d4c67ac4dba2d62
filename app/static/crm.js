/* CRM page behaviour without inline handlers (the CSP allows only our own scripts).
 *  <form data-confirm="确定…？">        asks before submitting
 *  <input type=file data-names="id">    shows the chosen file names in #id
 */
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form && form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
      ev.stopPropagation();
    }
  }, true);
  document.addEventListener("change", function (ev) {
    var input = ev.target;
    if (!input || !input.dataset || !input.dataset.names) { return; }
    var target = document.getElementById(input.dataset.names);
    if (!target) { return; }
    var names = Array.prototype.map.call(input.files || [], function (f) { return f.name; });
    target.textContent = names.join(input.dataset.sep || "、") || input.dataset.empty || "";
  });

  // Collapse the navbar behind its toggle when its menu would wrap onto a second line.
  function fitNavbar() {
    var body = document.body, nav = document.querySelector(".navbar .navbar-collapse");
    if (!nav || window.innerWidth < 768) { body.classList.remove("crm-nav-collapsed"); return; }
    body.classList.remove("crm-nav-collapsed");
    var items = nav.querySelectorAll(".navbar-nav > li");
    if (!items.length) { return; }
    var top = items[0].getBoundingClientRect().top, wraps = false;
    for (var i = 1; i < items.length; i++) {
      if (Math.abs(items[i].getBoundingClientRect().top - top) > 8) { wraps = true; break; }
    }
    body.classList.toggle("crm-nav-collapsed", wraps);
  }
  document.addEventListener("DOMContentLoaded", fitNavbar);
  window.addEventListener("resize", fitNavbar);

  // 全局搜索: "/" anywhere (not while typing) focuses the navbar's box; when the navbar
  // is collapsed behind its toggle, the menu is opened first so the box is visible.
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target, tag = t && t.tagName ? t.tagName.toLowerCase() : "";
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) { return; }
    var box = document.getElementById("crm-search-q");
    if (!box) { return; }
    ev.preventDefault();
    if (!box.offsetParent) {
      var collapse = document.querySelector(".navbar .navbar-collapse");
      if (collapse && !collapse.classList.contains("in")) {
        collapse.classList.add("in");
        collapse.style.height = "auto";
        collapse.setAttribute("aria-expanded", "true");
      }
    }
    box.focus();
    box.select();
  });

  // Pick lists are searchable: every <select> with more than a few options becomes a
  // select2 box with its search field (FAB's Select2Widget fields already are; FAB
  // ships select2). <select data-plain> stays native, <select data-search> is always
  // enhanced. Runs after the page's own scripts (which may set up their own select2,
  // e.g. an AJAX customer picker) and leaves those alone. The texts come from
  // #crm-i18n (crm_base.html, through Babel).
  var MIN_OPTIONS = 6;
  function i18n() {
    var el = document.getElementById("crm-i18n");
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  }
  function searchablePickLists(root) {
    var $ = window.jQuery;
    if (!$ || !$.fn || !$.fn.select2) { return; }
    var texts = i18n();
    $("select", root || document).each(function () {
      var el = this, $el = $(el);
      if ($el.hasClass("select2-hidden-accessible") || el.hasAttribute("data-plain")) { return; }
      if ($el.is(".my_select2, .my_select2_ajax, .my_select2_ajax_slave, .filter-op")) { return; }
      if (!el.hasAttribute("data-search") && el.options.length < MIN_OPTIONS) { return; }
      $el.select2({
        theme: "bootstrap", width: el.style.width || "resolve", dropdownAutoWidth: true,
        language: {
          noResults: function () { return texts.noResults || "No results found"; },
          searching: function () { return texts.searching || "Searching…"; }
        }
      });
      $el.addClass("crm-searchable");
    });
  }
  window.crmSearchablePickLists = searchablePickLists;
  document.addEventListener("DOMContentLoaded", function () {
    var later = function () { window.setTimeout(function () { searchablePickLists(document); }, 0); };
    if (window.jQuery) { window.jQuery(later); } else { later(); }
  });

  // 快速搜索: "Escape" in the box clears it.
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.key === "Escape" && t && t.id === "crm-list-q" && t.value) {
      t.value = "";
      ev.preventDefault();
    }
  });
})();

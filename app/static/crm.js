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
})();

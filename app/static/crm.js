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
})();

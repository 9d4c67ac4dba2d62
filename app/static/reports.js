/* 统计报表: draws the charts described in <script id="crm-report-charts"> (a JSON list
   of {id, option, links}) and opens the list behind a bar / slice / point on click. */
(function () {
  function init() {
    var data = document.getElementById('crm-report-charts');
    if (!data || !window.echarts) { return; }
    var charts = JSON.parse(data.textContent);
    charts.forEach(function (c) {
      var el = document.getElementById(c.id);
      if (!el) { return; }
      var chart = echarts.init(el);
      chart.setOption(c.option);
      if (c.links) {
        chart.on('click', function (p) {
          var url = c.links[p.dataIndex];
          if (url) { window.location.href = url; }
        });
        chart.getZr().on('mousemove', function () { el.style.cursor = 'pointer'; });
      }
      window.addEventListener('resize', function () { chart.resize(); });
      el.setAttribute('data-ready', '1');
    });
    var custom = document.querySelector('.crm-preset-custom');
    if (custom) {
      custom.addEventListener('click', function (e) {
        e.preventDefault();
        var f = document.getElementById('from');
        if (f) { f.focus(); }
      });
    }
  }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else { init(); }
}());

/* edx-engine dashboard: renders the page's Vega-Lite specs, sorts tables, opens the chosen course.
   Everything it needs is on the page or in static/: it never fetches anything. */
(function () {
  "use strict";
  var page = JSON.parse(document.getElementById("edx-page").textContent);
  var EDX = (window.EDX = { views: {}, errors: [], rendered: 0, expected: 0, done: false, page: page });

  function withWorld(spec) {
    // map layers refer to "@world": the TopoJSON object of static/world.js
    return JSON.parse(JSON.stringify(spec), function (k, v) {
      return v === "@world" ? window.EDX_WORLD : v;
    });
  }

  function follow(view, signal, elementId, texts) {
    // a switch (Vega parameter ``signal``) whose every value has its text in element ``elementId``
    var el = document.getElementById(elementId);
    if (!texts || !el) return;
    view.addSignalListener(signal, function (name, value) {
      if (texts[value]) el.textContent = texts[value];
    });
  }

  function render() {
    var charts = document.querySelectorAll(".chart[data-item]");
    EDX.expected = charts.length;
    if (!charts.length) { EDX.done = true; return; }
    var pending = charts.length;
    charts.forEach(function (el) {
      var id = el.getAttribute("data-item");
      var spec = withWorld(page.items[id].spec);
      window.vegaEmbed(el, spec, {
        actions: false, renderer: "svg",
        formatLocale: page.formatLocale, timeFormatLocale: page.timeFormatLocale
      }).then(function (res) {
        EDX.views[id] = res.view;
        var meta = spec.usermeta || {};
        follow(res.view, "grain", id + "-h", meta.grain_titles);  // the heading says weeks or months
        follow(res.view, "period", id + "-period", meta.period_notes);  // the caption says which period
        EDX.rendered += 1;
      }).catch(function (err) {
        EDX.errors.push(id + ": " + err);
        console.error("chart " + id + " failed: " + err);
        el.textContent = String(err);
      }).finally(function () {
        pending -= 1;
        if (pending === 0) { EDX.done = true; }
      });
    });
  }

  function sortable() {
    document.querySelectorAll("table.sortable button.sort").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var th = btn.closest("th"), table = btn.closest("table"), col = +btn.getAttribute("data-col");
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
          var nx = parseFloat(x), ny = parseFloat(y), c;
          if (x === "" && y === "") c = 0; else if (x === "") c = 1; else if (y === "") c = -1;
          else if (!isNaN(nx) && !isNaN(ny) && String(nx) === x.replace(/\.0+$/, "") ) c = nx - ny;
          else c = x.localeCompare(y, page.lang);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function courseSelect() {
    var form = document.getElementById("course-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var v = document.getElementById("course-select").value;
      if (v) window.location.href = v;
    });
  }

  function scrollHints() {
    // a table wider than its box (the course table on a phone) says that it scrolls sideways
    var wraps = document.querySelectorAll(".table-wrap");
    function update() {
      wraps.forEach(function (w) {
        var hint = w.parentNode.querySelector(".scroll-hint");
        if (hint) hint.hidden = !(w.clientWidth && w.scrollWidth > w.clientWidth + 1);
      });
    }
    document.querySelectorAll("details.data").forEach(function (d) { d.addEventListener("toggle", update); });
    window.addEventListener("resize", update);
    update();
  }

  sortable();
  scrollHints();
  courseSelect();
  render();
})();

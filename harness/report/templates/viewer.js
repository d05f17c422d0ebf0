(function () {
  "use strict";
  // Only toggles row visibility, reorders rows and writes a count with textContent; the data is in the HTML.
  var table = document.getElementById("q-table");
  if (!table) { return; }
  function el(id) { return document.getElementById(id); }
  function value(id) { var e = el(id); return e ? e.value : ""; }
  var search = el("q-search");
  var count = el("q-count");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var order = rows.slice();
  var haystack = rows.map(function (row) {
    var parts = [];
    Array.prototype.forEach.call(row.querySelectorAll(".s"), function (e) { parts.push(e.textContent); });
    return parts.join("\n").toLowerCase();
  });
  function cell(row, system) {
    var found = null;
    Array.prototype.forEach.call(row.cells, function (c) {
      if (c.getAttribute("data-system") === system) { found = c; }
    });
    return found;
  }
  function correct(row, system) {
    var c = cell(row, system);
    return c ? c.getAttribute("data-correct") : null;
  }
  function number(row, system, key) {
    var c = cell(row, system);
    var v = c ? c.getAttribute("data-" + key) : "";
    return v === "" || v === null ? null : parseFloat(v);
  }
  function apply() {
    var needle = search.value.trim().toLowerCase();
    var mode = value("q-filter"), cat = value("q-cat"), doc = value("q-doc");
    var a = value("q-a"), b = value("q-b");
    var shown = 0;
    rows.forEach(function (row, i) {
      var visible = (!needle || haystack[i].indexOf(needle) !== -1) &&
                    (mode === "all" || row.getAttribute("data-" + mode) === "1") &&
                    (!cat || row.getAttribute("data-category") === cat) &&
                    (!doc || row.getAttribute("data-doc") === doc) &&
                    (!a || correct(row, a) === "true") &&
                    (!b || correct(row, b) === "false");
      row.classList.toggle("hidden", !visible);
      if (visible) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " questions shown";
  }
  function sort() {
    var how = value("q-sort");
    var sorted = order.slice();
    if (how) {
      var key = how.split("|")[0], system = how.slice(key.length + 1);
      var sign = key === "latency" ? -1 : 1;  // latency: slowest first; margin: lowest first
      sorted.sort(function (x, y) {
        var p = number(x, system, key), q = number(y, system, key);
        if (p === null) { return q === null ? 0 : 1; }
        if (q === null) { return -1; }
        return sign * (p - q);
      });
    }
    sorted.forEach(function (r) { body.appendChild(r); });
  }
  search.addEventListener("input", apply);
  ["q-filter", "q-cat", "q-doc", "q-a", "q-b"].forEach(function (id) {
    if (el(id)) { el(id).addEventListener("change", apply); }
  });
  el("q-sort").addEventListener("change", sort);
  apply();
})();
(function () {
  "use strict";
  // Sortable tables (class "sortable"): a header click sorts the rows by that column's data-value (numbers
  // where the header says data-sort="num"), again to reverse. Missing values go last.
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.classList.add("sorter");
      th.setAttribute("title", "sort by this column (click again to reverse)");
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-sort") === "num";
        var dir = th.getAttribute("data-dir") === "desc" ? "asc" : "desc";
        if (!numeric && !th.hasAttribute("data-dir")) { dir = "asc"; }
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-value"), y = b.cells[col].getAttribute("data-value");
          if (x === "" || x === null) { return (y === "" || y === null) ? 0 : 1; }
          if (y === "" || y === null) { return -1; }
          var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
(function () {
  "use strict";
  // A retrieval system's prompt holds each passage once, in its passage list: opening the prompt copies the
  // passages' text into their places (textContent only).
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.classList || !details.classList.contains("prompt") || !details.open) { return; }
    var cell = details.parentNode;
    var texts = cell.querySelectorAll(".psg-text");
    Array.prototype.forEach.call(details.querySelectorAll("span[data-psg]"), function (slot) {
      var source = texts[parseInt(slot.getAttribute("data-psg"), 10)];
      if (source && !slot.textContent) { slot.textContent = source.textContent; }
    });
  }, true);
})();

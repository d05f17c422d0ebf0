(function () {
  "use strict";
  // Only toggles row visibility and writes a count with textContent; the data is in the HTML.
  var table = document.getElementById("q-table");
  if (!table) { return; }
  var search = document.getElementById("q-search");
  var filter = document.getElementById("q-filter");
  var count = document.getElementById("q-count");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var haystack = rows.map(function (row) {
    var parts = [];
    Array.prototype.forEach.call(row.querySelectorAll(".s"), function (el) { parts.push(el.textContent); });
    return parts.join("\n").toLowerCase();
  });
  function apply() {
    var needle = search.value.trim().toLowerCase();
    var mode = filter.value;
    var shown = 0;
    rows.forEach(function (row, i) {
      var visible = (!needle || haystack[i].indexOf(needle) !== -1) &&
                    (mode === "all" || row.getAttribute("data-" + mode) === "1");
      row.classList.toggle("hidden", !visible);
      if (visible) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " questions shown";
  }
  search.addEventListener("input", apply);
  filter.addEventListener("change", apply);
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

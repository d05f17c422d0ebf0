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

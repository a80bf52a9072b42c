/* The course's own page script (added to every page by _ext/course_diagrams.py).
   Display equations wider than their column are shrunk to fit it (MathJax 3 has no automatic
   line breaking). Long equations are also broken by hand in the page sources; this catches the
   rest on narrow screens. window.courseLayout resolves once the page is laid out. */
(function () {
  "use strict";
  // Never below 12 px (9 pt), the smallest text the course shows on a phone: an equation that
  // would need more shrinking is broken over lines in the page source instead (aligned).
  var MIN_FONT_PX = 12;

  function fitEquations() {
    var shrunk = [];
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (box) {
      box.style.fontSize = "";
      var avail = box.clientWidth, need = box.scrollWidth;
      if (avail > 0 && need > avail + 1) {
        var base = parseFloat(window.getComputedStyle(box).fontSize) || 16;
        var scale = Math.max(Math.min(1, MIN_FONT_PX / base), (avail - 2) / need);
        box.style.fontSize = (scale * 100).toFixed(1) + "%";
        shrunk.push(scale);
      }
    });
    document.body.setAttribute("data-equations-shrunk", JSON.stringify(shrunk));
  }

  // The interactive attention view (chapter 3) labels every character of its line on both
  // axes; where there is less than about 16 px per label they would run into each other, so
  // every k-th is shown (k per axis, from the plot's size). Hovering a cell still names both.
  var TICK_PX = 16;
  function thinTicks() {
    var views = document.querySelectorAll(".attention-view-live .js-plotly-plot");
    var done = [];
    views.forEach(function (div) {
      if (!window.Plotly || !div.layout || !div.layout.xaxis || !div.layout.xaxis.tickvals) return;
      var all = div._courseTicks || (div._courseTicks = {
        vals: div.layout.xaxis.tickvals.slice(), text: div.layout.xaxis.ticktext.slice()});
      var size = div._fullLayout && div._fullLayout._size;  // the plot area, without margins and colour bar
      var wide = size ? size.w : (div.clientWidth || 0) - 160;
      var tall = size ? size.h : (div.clientHeight || 0) - 120;
      var step = function (room) { return Math.max(1, Math.ceil(all.vals.length * TICK_PX / Math.max(room, 1))); };
      var sx = step(wide), sy = step(tall);
      if (div._courseSteps === sx + "," + sy) return;
      div._courseSteps = sx + "," + sy;
      var every = function (k) { return function (v, i) { return i % k === 0; }; };
      done.push(window.Plotly.relayout(div, {
        "xaxis.tickvals": all.vals.filter(every(sx)), "xaxis.ticktext": all.text.filter(every(sx)),
        "yaxis.tickvals": all.vals.filter(every(sy)), "yaxis.ticktext": all.text.filter(every(sy))}));
    });
    return Promise.all(done);
  }

  window.courseFitEquations = fitEquations;  // for the browser test, after opening dropdowns
  window.courseLayout = new Promise(function (resolve) {
    window.addEventListener("load", function () {
      var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
      (mj || Promise.resolve()).then(function () {
        fitEquations();
        return thinTicks();
      }).then(function () { resolve(); }, function () { resolve(); });
    });
  });
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { fitEquations(); thinTicks(); }, 150);
  });
})();

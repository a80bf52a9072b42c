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

  window.courseFitEquations = fitEquations;  // for the browser test, after opening dropdowns
  window.courseLayout = new Promise(function (resolve) {
    window.addEventListener("load", function () {
      var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
      (mj || Promise.resolve()).then(function () { fitEquations(); resolve(); }, function () { resolve(); });
    });
  });
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(fitEquations, 150);
  });
})();

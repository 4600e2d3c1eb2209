// The widget renderer (html-manager's embed.js) typesets widget labels with the MathJax 2 call
// `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`; the book loads MathJax 3, which has no
// `Hub`, so every widget label would throw. This file is loaded just before embed.js, and its
// `load` listener therefore runs before embed.js renders the widgets: it gives MathJax 3 a `Hub`
// whose `Queue` typesets the element with MathJax 3 once MathJax has started.
(function () {
  "use strict";
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.typesetPromise !== "function") {
      return;
    }
    mj.Hub = {
      Queue: function (command) {
        var element = command && command[2];
        if (!element) {
          return;
        }
        var started = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        started
          .then(function () { return mj.typesetPromise([element]); })
          .catch(function (err) { console.error("widget label not typeset:", err); });
      }
    };
  }
  window.addEventListener("load", addHub);
})();

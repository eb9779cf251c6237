// ketamine-gateway console: small enhancements only; every page works
// without this file. Served from 'self' under a strict CSP (no inline
// scripts anywhere).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Following a link to a highlighted field moves the keyboard focus there.
  document.querySelectorAll("a[href^='#ptr']").forEach(function (a) {
    a.addEventListener("click", function () {
      var el = document.getElementById(decodeURIComponent(a.getAttribute("href").slice(1)));
      if (el) { el.setAttribute("tabindex", "-1"); el.focus(); }
    });
  });
});

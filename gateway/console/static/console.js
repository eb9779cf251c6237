// ketamine-gateway console: small enhancements only; every page works
// without this file. Served from 'self' under a strict CSP (no inline
// scripts anywhere).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Buttons marked js-only are shown only when this script runs.
  document.querySelectorAll(".js-only").forEach(function (el) { el.classList.add("js-ready"); });
  // A button with data-toggle-details opens or closes that <details>.
  document.querySelectorAll("[data-toggle-details]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var d = document.getElementById(btn.getAttribute("data-toggle-details"));
      if (d) { d.open = !d.open; }
    });
  });
  // Following a link to a highlighted field moves the keyboard focus there.
  document.querySelectorAll("a[href^='#ptr']").forEach(function (a) {
    a.addEventListener("click", function () {
      var el = document.getElementById(decodeURIComponent(a.getAttribute("href").slice(1)));
      if (el) { el.setAttribute("tabindex", "-1"); el.focus(); }
    });
  });
});

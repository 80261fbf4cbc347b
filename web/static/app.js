// mimamori: the little the pages need beyond HTML. No inline script anywhere (the content
// security policy forbids it); everything here is progressive: the pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The custom range's inputs show only when "custom" is chosen.
  for (const select of document.querySelectorAll("select.range-select")) {
    const custom = select.closest("fieldset")?.querySelector(".custom-range");
    const sync = () => { if (custom) custom.hidden = select.value !== "custom"; };
    select.addEventListener("change", sync);
    sync();
  }
  // Clicking an example or a field name puts it in the query box.
  const q = document.getElementById("q");
  for (const code of document.querySelectorAll("code.insert")) {
    code.addEventListener("click", () => {
      if (!q) return;
      q.value = (q.value.trim() + " " + code.textContent).trim();
      q.focus();
    });
  }
  for (const button of document.querySelectorAll("button.print")) {
    button.addEventListener("click", () => window.print());
  }
});

/* TrailScope: type-to-search in the dataset selector (and every Dash dropdown).
 *
 * Dash's dropdown moves the keyboard focus onto an option when it opens, so typed letters went
 * nowhere. This capture-phase handler sends printable keys to the open dropdown's search box:
 * whether the focus is on an option inside the open list, or still on the dropdown's own
 * button because the list opened a moment after the key press (a loaded machine). Focusing the
 * box during keydown makes the browser type the character into it. And when the filtered list
 * re-draws under the focused option, the focus falls back to the page (or stays in the search
 * box with no option highlighted): Enter then picks the first match instead of doing nothing,
 * and a letter typed in that moment still reaches the search box (it was lost: "tao" became
 * "to").
 */
(function () {
  "use strict";
  if (window.trailscopeTypeToSearch) { return; }
  window.trailscopeTypeToSearch = true;
  document.addEventListener("keyup", function (e) {
    // Enter picks on key-up, as Dash's own options and search box do: picking on key-down
    // closed the list, the focus went back to the dropdown's button, and the key-up that
    // followed landed there and opened the list again (it stayed open after a pick)
    if (e.key !== "Enter" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    // the filtered list re-drew under the focused option and the focus fell back to the
    // page, or it is in the search box with no option highlighted (the box's own handler
    // picked nothing while its search value had not reached the component yet)
    var active = document.activeElement;
    var inSearch = active && active.matches && active.matches("input.dash-dropdown-search");
    if (active && active !== document.body && !inSearch) { return; }
    var first = document.querySelector(".dash-dropdown-content .dash-dropdown-option");
    if (!first) { return; }
    e.preventDefault();
    e.stopPropagation();
    if (first.getAttribute("aria-selected") === "true") {
      // the match is the value already chosen: a click on its checked radio changes nothing
      // and the list stayed open; close it as Escape does
      (active || document).dispatchEvent(
        new KeyboardEvent("keydown", {key: "Escape", bubbles: true, cancelable: true}));
    } else {
      first.click();
    }
  }, true);
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !e.key) { return; }
    if (e.key.length !== 1) { return; }
    var target = e.target;
    if (!target || !target.closest) { return; }
    var box = target.closest(".dash-dropdown-content");
    var search = box ? box.querySelector("input.dash-dropdown-search") : null;
    if (!box && (target === document.body || target === document.documentElement ||
                 target.closest(".dash-dropdown"))) {
      // the focus is on the dropdown's button, or it fell back to the page when the filtered
      // list re-drew under it (a loaded machine): the next letter goes to the open list's
      // search box, not nowhere (the list is open in a portal outside the button)
      search = document.querySelector(".dash-dropdown-content input.dash-dropdown-search");
    }
    if (search && target !== search) { search.focus(); }
  }, true);
}());

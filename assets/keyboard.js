/* TrailScope: type-to-search in the dataset selector (and every Dash dropdown).
 *
 * Dash's dropdown moves the keyboard focus onto an option when it opens, so typed letters went
 * nowhere. This capture-phase handler sends printable keys to the open dropdown's search box:
 * whether the focus is on an option inside the open list, or still on the dropdown's own
 * button because the list opened a moment after the key press (a loaded machine). Focusing the
 * box during keydown makes the browser type the character into it. And when the filtered list
 * re-draws under the focused option, the focus falls back to the page (or stays in the search
 * box with no option highlighted): Enter then picks the first match instead of doing nothing.
 */
(function () {
  "use strict";
  if (window.trailscopeTypeToSearch) { return; }
  window.trailscopeTypeToSearch = true;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !e.key) { return; }
    if (e.key === "Enter") {
      // the filtered list re-drew under the focused option and the focus fell back to the
      // page: Enter still picks the first match, as it does from the search box
      // (or it is still in the search box, where Enter picked nothing when no option was
      // highlighted yet)
      var active = document.activeElement;
      var inSearch = active && active.matches && active.matches("input.dash-dropdown-search");
      if (active && active !== document.body && !inSearch) { return; }
      var first = document.querySelector(".dash-dropdown-content .dash-dropdown-option");
      if (first) { e.preventDefault(); e.stopPropagation(); first.click(); }
      return;
    }
    if (e.key.length !== 1) { return; }
    var target = e.target;
    if (!target || !target.closest) { return; }
    var box = target.closest(".dash-dropdown-content");
    var search = box ? box.querySelector("input.dash-dropdown-search") : null;
    if (!box && target.closest(".dash-dropdown")) {
      // the list is open in a portal outside the button: its search box, if any
      search = document.querySelector(".dash-dropdown-content input.dash-dropdown-search");
    }
    if (search && target !== search) { search.focus(); }
  }, true);
}());

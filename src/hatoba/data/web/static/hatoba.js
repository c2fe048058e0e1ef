// Progressive enhancement only: every page works without this file.
// "Copy" buttons (hidden without script) put a DNS record or an app password on the clipboard.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.copy").forEach(function (button) {
    if (!navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(button.dataset.copy).then(function () {
        button.classList.add("copied");
      });
    });
  });
  // Ask before a removal or a deletion.
  document.querySelectorAll("button.danger").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.textContent.trim() + "?")) { event.preventDefault(); }
    });
  });
});

// Small progressive enhancements. No inline scripts anywhere: the CSP forbids them.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// The instance form: the webhook and SSM fields only for their push target.
function showFieldsOfPushTarget() {
  const chosen = document.querySelector('select[name="push_target"]');
  if (!chosen) return;
  document.querySelectorAll("[data-push-target]").forEach((field) => {
    field.hidden = field.dataset.pushTarget !== chosen.value;
  });
}
document.addEventListener("DOMContentLoaded", showFieldsOfPushTarget);
document.addEventListener("change", (event) => {
  if (event.target.matches('select[name="push_target"]')) showFieldsOfPushTarget();
});

// A form with data-confirm asks before it is sent (disabling a user, revoking tokens...).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

/* django-motp admin: keeps an unsettled payment's page in step with the gateway, and fills a
   field from a "max" button. No dependencies; every text shown comes from the server. */
(function () {
    "use strict";

    function formatSeconds(total) {
        var minutes = Math.floor(total / 60);
        var seconds = total % 60;
        return minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
    }

    function follow(panel) {
        var url = panel.getAttribute("data-motp-status-url");
        var interval = Math.max(1, Number(panel.getAttribute("data-motp-poll-interval")) || 3) * 1000;
        var part = function (name) { return panel.querySelector('[data-motp="' + name + '"]'); };
        var timeLeft = part("time-left");
        var deadline = null;
        var clock = null;

        function setSecondsLeft(seconds) {
            var box = part("time-left-box");
            if (seconds === null || seconds === undefined || seconds === "") {
                deadline = null;
                if (box) { box.hidden = true; }
                return;
            }
            deadline = Date.now() + Number(seconds) * 1000;
            if (box) { box.hidden = false; }
            tick();
        }

        function tick() {
            if (deadline === null || !timeLeft) { return; }
            timeLeft.textContent = formatSeconds(Math.max(0, Math.round((deadline - Date.now()) / 1000)));
        }

        function apply(data) {
            part("headline").textContent = data.headline;
            part("message").textContent = data.panel_message || "";
            panel.className = panel.className.replace(/\bmotp-tone-\S+/, "motp-tone-" + data.tone);
            var badge = panel.querySelector(".motp-badge");
            if (badge) {
                badge.className = "motp-badge motp-status-" + data.status;
                badge.textContent = data.status_display;
            }
            setSecondsLeft(data.final ? null : data.seconds_left);
            if (data.final) {
                var qr = part("qr");
                if (qr) { qr.remove(); }
                panel.setAttribute("data-motp-status", data.status);
            }
        }

        function poll() {
            fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
                .then(function (response) { return response.ok ? response.json() : null; })
                .then(function (data) {
                    if (data) { apply(data); }
                    if (data && data.final) {
                        window.clearInterval(clock);
                        return;
                    }
                    window.setTimeout(poll, interval);
                })
                .catch(function () { window.setTimeout(poll, interval); });  // offline a moment
        }

        if (timeLeft) { setSecondsLeft(timeLeft.getAttribute("data-seconds")); }
        clock = window.setInterval(tick, 1000);
        window.setTimeout(poll, interval);
    }

    function start() {
        document.querySelectorAll("[data-motp-status-url]").forEach(follow);
        document.querySelectorAll("[data-motp-fill]").forEach(function (button) {
            button.addEventListener("click", function () {
                var field = document.getElementById(button.getAttribute("data-motp-fill"));
                if (field) {
                    field.value = button.getAttribute("data-value");
                    field.focus();
                }
            });
        });
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

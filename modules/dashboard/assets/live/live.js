// The live panel: clicks per minute for the last 60 minutes and the last 20 clicks,
// from the live feed (Server-Sent Events), without reloading the page.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live-src]").forEach(function (panel) {
    var svg = panel.querySelector(".live-chart");
    var status = panel.querySelector(".live-status");
    var tbody = panel.querySelector(".live-clicks tbody");
    var ns = "http://www.w3.org/2000/svg";
    // Styled here, not in style.css: the panel brings its own look (CSSOM, allowed by
    // the dashboard's CSP, unlike style attributes in markup).
    svg.style.width = "100%";
    svg.style.height = "auto";
    svg.style.display = "block";
    svg.parentNode.style.margin = "0";
    var perMinute = {}; // minute (ms since epoch) -> clicks
    var minute = 60000;

    function draw() {
      var now = Math.floor(Date.now() / minute) * minute;
      var counts = [];
      var max = 1;
      for (var i = 59; i >= 0; i--) {
        var n = perMinute[now - i * minute] || 0;
        counts.push(n);
        max = Math.max(max, n);
      }
      for (var k in perMinute) {
        if (Number(k) < now - 59 * minute) {
          delete perMinute[k];
        }
      }
      while (svg.firstChild) {
        svg.removeChild(svg.firstChild);
      }
      counts.forEach(function (n, i) {
        var h = Math.round((n / max) * 110);
        var r = document.createElementNS(ns, "rect");
        r.setAttribute("class", "bar");
        r.style.fill = "var(--accent)";
        r.setAttribute("x", String(i * 10 + 1));
        r.setAttribute("y", String(115 - h));
        r.setAttribute("width", "8");
        r.setAttribute("height", String(h));
        var title = document.createElementNS(ns, "title");
        title.textContent = n + " clicks, " + (59 - i) + " min ago";
        r.appendChild(title);
        svg.appendChild(r);
      });
    }

    function cell(text) {
      var td = document.createElement("td");
      td.textContent = text || "unknown";
      td.title = td.textContent; // cut with an ellipsis when long
      return td;
    }

    function add(click) {
      var at = new Date(click.clicked_at);
      var m = Math.floor(at.getTime() / minute) * minute;
      perMinute[m] = (perMinute[m] || 0) + 1;
      var tr = document.createElement("tr");
      // UTC, as every other time in the dashboard is shown.
      tr.appendChild(cell(at.toISOString().slice(11, 19) + " UTC"));
      tr.appendChild(cell(click.slug));
      tr.appendChild(cell(click.country));
      tr.appendChild(cell(click.referer));
      tr.appendChild(cell(click.device + (click.bot ? " (bot)" : "")));
      tbody.insertBefore(tr, tbody.firstChild);
      while (tbody.children.length > 20) {
        tbody.removeChild(tbody.lastChild);
      }
    }

    var pending = false;
    function redraw() {
      if (!pending) {
        pending = true;
        setTimeout(function () { pending = false; draw(); }, 250);
      }
    }

    draw();
    setInterval(draw, 10000);
    var src = new EventSource(panel.dataset.liveSrc);
    src.addEventListener("open", function () { status.textContent = "Live"; });
    src.addEventListener("error", function () { status.textContent = "Reconnecting…"; });
    src.addEventListener("click", function (ev) {
      add(JSON.parse(ev.data));
      redraw();
    });
  });
});

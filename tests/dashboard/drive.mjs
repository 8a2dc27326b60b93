// Drives the admin dashboard in headless Chromium, as an operator would: a wrong token is
// refused, the right one shows the figures and charts, a device is found by search and
// revoked with the two-step button. Prints one JSON object of what it saw; the Rust test
// (crates/server/tests/it/dashboard.rs) checks it, the screenshot and the server's state.
//
// usage: node drive.mjs ADMIN_BASE_URL TOKEN DEVICE_UUID SCREENSHOT.png
import { chromium } from "playwright-core";

const [base, token, device, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node drive.mjs ADMIN_BASE_URL TOKEN DEVICE_UUID SCREENSHOT.png");
  process.exit(64);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // The machine's network is closed: without these Chromium keeps dialling out.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const seen = { console_errors: [], page_errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("console", (m) => { if (m.type() === "error") seen.console_errors.push(m.text()); });
  page.on("pageerror", (e) => seen.page_errors.push(String(e)));

  await page.goto(`${base}/admin/`);
  seen.login_visible = await page.isVisible("#login");

  // A wrong token: refused, still on the login form.
  await page.fill("#token", "wrong-token-wrong-token-wrong-token");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("login-error").textContent !== "");
  seen.wrong_token_message = await page.textContent("#login-error");
  seen.app_visible_after_wrong_token = await page.isVisible("#app");

  // The right one.
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#app", { state: "visible" });
  await page.waitForFunction(() => document.getElementById("t-enroll").textContent !== "–");
  await page.waitForSelector("#c-enroll svg rect");
  await page.waitForSelector("#audit tbody tr");
  await page.waitForSelector("#reasons tbody tr[data-code]");
  await page.waitForSelector("#routes tbody tr[data-route]");
  seen.tiles = {
    enrollments: await page.textContent("#t-enroll"),
    pass_rate: await page.textContent("#t-pass"),
    sms_sent: await page.textContent("#t-sent"),
    sms_blocked: await page.textContent("#t-blocked"),
    spend: await page.textContent("#t-spend"),
    refused: await page.textContent("#t-refused"),
  };
  // Refusals by reason: code → count and code → name, as the table shows them.
  ({ counts: seen.reasons, names: seen.reason_names } = await page.evaluate(() => {
    const counts = {}, names = {};
    for (const tr of document.querySelectorAll("#reasons tbody tr[data-code]")) {
      counts[tr.dataset.code] = tr.querySelector("td.count").textContent;
      names[tr.dataset.code] = tr.querySelector("span.name").textContent;
    }
    return { counts, names };
  }));
  seen.refusal_bars = await page.locator("#c-refusals svg rect").count();
  seen.hourly_bars = await page.locator("#c-refusals-hourly svg rect").count();
  seen.hourly_titles = await page.locator("#c-refusals-hourly svg rect title").allTextContents();
  seen.hourly_ticks = await page.locator("#c-refusals-hourly svg text").allTextContents();
  // Per route: the cells of each row.
  seen.routes = await page.evaluate(() => {
    const out = {};
    for (const tr of document.querySelectorAll("#routes tbody tr[data-route]")) {
      const c = tr.cells;
      out[tr.dataset.route] = {
        upstream: c[1].textContent, requests: c[2].textContent, refused: c[3].textContent,
        share: c[4].textContent, mean: c[5].textContent, p95: c[6].textContent,
      };
    }
    return out;
  });
  seen.time_zone = await page.textContent("#tz");
  seen.status_line = await page.textContent("#status");
  seen.audit_times = await page.locator("#audit tbody tr td:nth-child(1)").allTextContents();
  seen.bars = {
    enroll: await page.locator("#c-enroll svg rect").count(),
    attest: await page.locator("#c-attest svg rect").count(),
    sms: await page.locator("#c-sms svg rect").count(),
  };
  seen.bar_titles = await page.locator("svg rect title").allTextContents();
  seen.top_devices = await page.locator("#top-devices tbody td.mono").allTextContents();
  seen.top_ips = await page.locator("#top-ips tbody td.mono").allTextContents();
  seen.audit_kinds = await page.locator("#audit tbody tr td:nth-child(2)").allTextContents();
  await page.screenshot({ path: screenshot, fullPage: true });

  // Search for the device and revoke it: the first click only arms the button.
  await page.fill("#q", device);
  await page.click("#search-form button[type=submit]");
  const row = page.locator(`#devices tbody tr[data-device="${device}"]`);
  await row.waitFor();
  // The latest-devices list shown at sign-in holds the device too: wait for the search's
  // answer to replace it (a timeout here leaves the count for the test to report).
  await page.waitForFunction(() => document.querySelectorAll("#devices tbody tr").length === 1,
    null, { timeout: 5000 }).catch(() => {});
  seen.search_rows = await page.locator("#devices tbody tr").count();
  const revoke = row.locator("button");
  await revoke.click();
  seen.armed_label = await revoke.textContent();
  await revoke.click();
  await page.waitForFunction(
    (id) => document.querySelector(`#devices tbody tr[data-device="${id}"] td.status`)?.textContent === "revoked",
    device,
  );
  seen.status_after_revoke = await row.locator("td.status").textContent();
  seen.message = await page.textContent("#status");
  // Signing out forgets the token.
  await page.click("#signout");
  seen.login_visible_after_signout = await page.isVisible("#login");
  seen.token_kept = await page.evaluate(() => sessionStorage.length);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

// Courier's Node SDK, unchanged, against bulkstream: the key and the base URL come from
// COURIER_API_KEY and COURIER_BASE_URL, as for any Courier user. Prints one JSON line.
import Courier from "@trycourier/courier";

const client = new Courier({ maxRetries: 2 });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const { jobId } = await client.bulk.createJob({
  message: { message: { template: "TPL" }, data: { company: "Acme" } },
});
const added = await client.bulk.addUsers(jobId, {
  users: [{ to: { user_id: "spike" } }, { to: { user_id: "spike" } }, { data: { a: 1 } }],
  metadata: { trace: "node" },
});
await client.bulk.runJob(jobId);
let job;
for (let i = 0; i < 600; i++) {
  job = (await client.bulk.retrieveJob(jobId)).job;
  if (job.status === "COMPLETED" || job.status === "ERROR") break;
  await sleep(100);
}
const users = await client.bulk.listUsers(jobId);
const refused = {};
for (const [name, call] of [
  ["run", () => client.bulk.runJob(jobId)],
  ["ingest", () => client.bulk.addUsers(jobId, { users: [{ to: { user_id: "late" } }] })],
]) {
  try {
    await call();
    refused[name] = null;
  } catch (error) {
    refused[name] = { name: error.constructor.name, status: error.status, error: error.error };
  }
}
console.log(JSON.stringify({ jobId, added, job, users, refused }));

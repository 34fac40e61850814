import { setTimeout as pause } from 'node:timers/promises'
import t from 'tap'
import { eventually } from './eventually.js'

t.test('resolves once the check holds', async (t) => {
  let calls = 0
  await eventually('the third look', () => ++calls === 3, 5000, 1)
  t.equal(calls, 3)
})

t.test('a failed wait names what it waited for, and stops asking', async (t) => {
  let calls = 0
  await t.rejects(eventually('a thing that never comes', () => { calls++; return false }, 100, 5), /a thing that never comes/)
  const atFailure = calls
  // asserting that nothing more happens needs some time to pass: 20 of the polling intervals
  await pause(100)
  t.equal(calls, atFailure, 'no look after the failure: a loop still polling would keep the test process alive')
})

t.test('a check that never settles is bounded too', async (t) => {
  await t.rejects(eventually('a hung check', async () => await new Promise<boolean>(() => {}), 50), /a hung check/)
})

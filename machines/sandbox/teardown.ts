import { releaseAll, releaseChain, type StateConfig } from './build.ts';

/** Destroy: release everything; an undo that fails leaves the sandbox in Error, holding what it could not release. */
export const destroying: StateConfig = {
  ...releaseChain(releaseAll, 'Release everything the sandbox holds'),
  tags: ['busy'],
  on: { DESTROY: { actions: 'queueDestroy' } },
  onDone: [
    { guard: 'releaseFailed', target: '#sandbox.error', actions: ['replyDestroys', 'clearDestroys'] },
    { target: '#sandbox.destroyed' },
  ],
};

/** The VMM died on its own while Running: release everything and drop the sandbox. */
export const crashed: StateConfig = {
  ...releaseChain(releaseAll, 'The VMM exited unasked: release everything and drop the sandbox'),
  tags: ['busy'],
  on: { DESTROY: { actions: 'queueDestroy' } },
  onDone: [{ guard: 'releaseFailed', target: '#sandbox.error' }, { target: '#sandbox.destroyed' }],
};

export * from './generated.js';
export * from './topics.js';
export * from './ids.js';
export * from './scope.js';
export * from './time.js';

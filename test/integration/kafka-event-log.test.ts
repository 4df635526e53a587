import { eventLogContract } from '../contract/event-log.contract.js';
import { deleteTopics, freshLayout, openKafkaLog } from './support/servers.js';

eventLogContract(
  'KafkaEventLog (real Kafka + schema registry)',
  async () => {
    const layout = freshLayout('contract');
    const log = await openKafkaLog(layout);
    return {
      log,
      close: async () => {
        await log.close();
        await deleteTopics(layout);
      },
    };
  },
  { dedupOnAppend: false, denseOutputOffsets: false },
);

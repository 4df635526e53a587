import type { ChatModel } from '../core/ports/chat-model.js';
import { inSpan } from './trace-context.js';

/**
 * A chat model whose every call is a client span (`chat <model>`, OpenTelemetry's GenAI conventions): the
 * model asked, the tokens the endpoint reported and why the answer ended; a child of the active span (the
 * stage batch or consolidation activity that asked). The messages and the answer are never attributes.
 */
export function tracedChat(chat: ChatModel): ChatModel {
  return {
    model: chat.model,
    complete: (request) =>
      inSpan(
        `chat ${chat.model}`,
        {
          kind: 'client',
          parent: request.traceContext,
          attributes: {
            'gen_ai.operation.name': 'chat',
            'gen_ai.request.model': chat.model,
            ...(request.maxTokens === undefined ? {} : { 'gen_ai.request.max_tokens': request.maxTokens }),
          },
        },
        async (span) => {
          const completion = await chat.complete(request);
          span.setAttributes({
            'gen_ai.usage.input_tokens': completion.promptTokens,
            'gen_ai.usage.output_tokens': completion.completionTokens,
            'gen_ai.response.finish_reasons': [completion.finishReason],
          });
          return completion;
        },
      ),
  };
}

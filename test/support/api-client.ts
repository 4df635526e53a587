/** A JSON client of the HTTP API with one API key, as an application would use it. */
export interface ApiAnswer<T = Record<string, unknown>> {
  readonly status: number;
  readonly json: T;
  readonly headers: Headers;
}

export interface ApiClient {
  get<T = Record<string, unknown>>(path: string): Promise<ApiAnswer<T>>;
  post<T = Record<string, unknown>>(path: string, body: unknown): Promise<ApiAnswer<T>>;
  delete<T = Record<string, unknown>>(path: string): Promise<ApiAnswer<T>>;
  /** Any request with the key's Authorization header added (unless `init.headers` sets one). */
  raw(path: string, init?: RequestInit): Promise<Response>;
}

export function apiClient(base: string, apiKey: string | null): ApiClient {
  const raw = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${base}${path}`, {
      ...init,
      headers: {
        ...(apiKey === null ? {} : { authorization: `Bearer ${apiKey}` }),
        ...(init.headers as Record<string, string>),
      },
    });
  const answer = async <T>(response: Response): Promise<ApiAnswer<T>> => {
    const text = await response.text();
    return {
      status: response.status,
      json: (text === '' ? {} : JSON.parse(text)) as T,
      headers: response.headers,
    };
  };
  return {
    get: async (path) => answer(await raw(path)),
    post: async (path, body) =>
      answer(
        await raw(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: typeof body === 'string' ? body : JSON.stringify(body),
        }),
      ),
    delete: async (path) => answer(await raw(path, { method: 'DELETE' })),
    raw,
  };
}

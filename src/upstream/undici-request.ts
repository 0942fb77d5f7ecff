// `dispatcher.request(opts)` for the dispatchers meshlet takes from undici's own modules: without undici's index (fetch, WebSocket, cache, mock code) they lack the API methods.
import type { Dispatcher } from 'undici';
import apiRequest from 'undici/lib/api/api-request.js';

/** undici's `request` API through `dispatcher` (a Pool or Client of an upstream's endpoint). */
export function requestThrough(
  dispatcher: Dispatcher,
  opts: Dispatcher.RequestOptions,
): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(dispatcher, opts);
}

import { useEffect, useState } from 'react';

/** `load()` when the view mounts and every `everyMs` while the page is visible:
 * its last answer and the last error (as text). Shared by the Resources and Models tabs. */
export function usePolled<T>(
  load: () => Promise<T>,
  key: unknown,
  everyMs = 30000
): { value: T | null; error: string | null } {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let alive = true;
    const tick = async () => {
      if (document.hidden) {
        return;
      }
      try {
        const answer = await load();
        if (alive) {
          setValue(answer);
          setError(null);
        }
      } catch (e) {
        if (alive) {
          setError(String((e as Error).message || e));
        }
      }
    };
    void tick();
    const timer = window.setInterval(tick, everyMs);
    return () => {
      alive = false;
      window.clearInterval(timer);
    };
  }, [key]);
  return { value, error };
}

import React, { useEffect, useState } from 'react';

import { metric } from './format';
import { RunsModel } from './model';
import { IModels, IModelVersion } from './types';

function metrics(v: IModelVersion): string {
  return Object.entries(v.metrics)
    .slice(0, 3)
    .map(([k, x]) => `${k}=${metric(x)}`)
    .join(' ');
}

/** The model registry: each name with its versions (newest first), their runs and
 * aliases. Fetched when the tab is shown and every 30 s while it stays visible. */
export function ModelsView(props: { model: RunsModel }): JSX.Element {
  const [models, setModels] = useState<IModels | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let alive = true;
    const load = async () => {
      if (document.hidden) {
        return;
      }
      try {
        const answer = await props.model.models();
        if (alive) {
          setModels(answer);
          setError(null);
        }
      } catch (e) {
        if (alive) {
          setError(String((e as Error).message || e));
        }
      }
    };
    void load();
    const timer = window.setInterval(load, 30000);
    return () => {
      alive = false;
      window.clearInterval(timer);
    };
  }, [props.model]);
  return (
    <div className="jp-runctl-models">
      {error && <div className="jp-runctl-error">{error}</div>}
      {models && models.models.length === 0 && (
        <div className="jp-runctl-note">
          No models yet: --register-model NAME on a train, or
          runctl.register_model(model, NAME) in a run.
        </div>
      )}
      {models?.models.map(m => (
        <div key={m.name} className="jp-runctl-model" data-model={m.name}>
          <div className="jp-runctl-model-name">
            <b>{m.name}</b>{' '}
            {Object.entries(m.aliases)
              .map(([a, v]) => `${a}=v${v}`)
              .join(' ')}
          </div>
          <table className="jp-runctl-model-table">
            <tbody>
              {m.versions.map(v => (
                <tr key={v.version} data-version={v.version}>
                  <td>v{v.version}</td>
                  <td>{v.aliases.join(', ')}</td>
                  <td>{v.run_id}</td>
                  <td>{metrics(v)}</td>
                  <td title={v.source ?? ''}>{v.sha256}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </div>
  );
}
